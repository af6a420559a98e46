"""Misbehaving messaging servers for the fault tests: an aiosmtpd handler that fails on purpose.

The SMTP server itself is the project's (``tests/notify/smtp_server.py``: a real aiosmtpd
server on a fixed loopback port that can be stopped and started again); this module only gives
it a handler that can, for the next N messages,

* answer ``451`` (a temporary failure) to ``RCPT TO`` or to the end of ``DATA``;
* drop the connection once the message's data has arrived, before answering it;
* stall inside ``DATA`` until the test releases it (so that a sender is provably mid-send).

Whatever it does not accept, it does not keep: ``messages`` holds only what got a ``250``
(or, for a stalled message, what the server went on to accept after the client vanished:
the real SMTP window in which a message can be delivered twice).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from typing import Any

from flask import Flask

from tests.conftest import TEST_KEY
from tests.notify.smtp_server import Inbox, Smtp

MAIL_FROM = "relais@hopital.example"
PUBLIC_BASE_URL = "https://relais.hopital.example"


class FaultyInbox(Inbox):
    """The project's Inbox, with faults switched on for a number of messages at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.rcpt_failures = 0
        self.data_failures = 0
        self.data_drops = 0
        self.stall_at: int | None = None
        self.queued_first = False
        self.stalled = threading.Event()
        self.stall_over = threading.Event()  # the held DATA answered, or was cancelled
        self.release = threading.Event()
        self.data_seen = 0
        self.stalled_message_id: str | None = None
        self.refused: list[str] = []  # how each refused message was refused, in order

    # --- what the test asks for ---------------------------------------------------------

    def fail_rcpt(self, times: int) -> None:
        """Answer ``451`` to the next ``times`` RCPT TO commands."""
        with self.lock:
            self.rcpt_failures = times

    def fail_data(self, times: int) -> None:
        """Answer ``451`` at the end of the next ``times`` DATA commands."""
        with self.lock:
            self.data_failures = times

    def drop_data(self, times: int) -> None:
        """Close the connection at the end of the next ``times`` DATA, without answering."""
        with self.lock:
            self.data_drops = times

    def stall_on(self, number: int, *, queued_first: bool) -> None:
        """Hold the ``number``-th DATA (1-based, counted from now) until ``release`` is set.

        ``queued_first``: the relay keeps the message *before* it holds the answer (as an MTA
        that has queued it and is slow to say ``250``): if the sender dies meanwhile, the
        message still goes on. Otherwise it keeps it only when it answers: if the sender dies
        first, aiosmtpd cancels the handler and the message is gone with the connection.
        """
        with self.lock:
            self.stall_at = self.data_seen + number
            self.queued_first = queued_first
            self.stalled.clear()
            self.stall_over.clear()
            self.release.clear()

    # --- aiosmtpd hooks -------------------------------------------------------------------

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            if self.rcpt_failures > 0:
                self.rcpt_failures -= 1
                self.refused.append("rcpt_451")
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_seen += 1
            stall = self.stall_at == self.data_seen
            if not stall and self.data_failures > 0:
                self.data_failures -= 1
                self.refused.append("data_451")
                return "451 4.3.0 Temporary local problem"
            drop = not stall and self.data_drops > 0
            if drop:
                self.data_drops -= 1
                self.refused.append("data_dropped")
        if drop:
            server.transport.close()  # the data arrived; the answer never goes
            return "421 4.3.0 Closing"  # written to a closed transport: never seen
        if not stall:
            return await super().handle_DATA(server, session, envelope)
        stalled = message_from_bytes(bytes(envelope.content), policy=policy.default)
        self.stalled_message_id = str(stalled["Message-ID"])
        try:
            if self.queued_first:
                answer = await super().handle_DATA(server, session, envelope)
            self.stalled.set()
            while not self.release.is_set():  # poll: the handler runs in the server's loop
                await asyncio.sleep(0.02)  # cancelled here when the sender's connection is lost
            if not self.queued_first:
                answer = await super().handle_DATA(server, session, envelope)
            return answer
        finally:
            self.stall_over.set()

    # --- what arrived ---------------------------------------------------------------------

    def by_message_id(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.parsed())

    def by_recipient(self) -> Counter[str]:
        return Counter(rcpt for rcpts, _ in self.messages for rcpt in rcpts)

    def subjects_by_recipient(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for rcpts, raw in self.messages:
            message = message_from_bytes(raw, policy=policy.default)
            for rcpt in rcpts:
                found.setdefault(rcpt, []).append(str(message["Subject"]))
        return found


@contextmanager
def faulty_smtp(app: Flask) -> Iterator[tuple[Smtp, FaultyInbox]]:
    """The project's SMTP server with a :class:`FaultyInbox`, started, and ``app`` using it."""
    server = Smtp()
    inbox = FaultyInbox()
    server.inbox = inbox
    server.start()
    app.config.update(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port,
                      MAIL_FROM=MAIL_FROM, MAIL_USE_TLS=False, PUBLIC_BASE_URL=PUBLIC_BASE_URL)
    try:
        yield server, inbox
    finally:
        inbox.release.set()  # a stalled handler must not hold the server's stop
        server.stop()


def cli_settings(app: Flask, smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment of a ``flask --app wsgi ...`` process on the test's database and SMTP."""
    settings = {
        "RELAIS_ENV": "testing",
        "DATABASE_URL": str(app.config["SQLALCHEMY_DATABASE_URI"]),
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port),
        "MAIL_FROM": MAIL_FROM,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    }
    settings.update(extra)
    return settings


def message_id(row_id: int) -> str:
    """The Message-ID the email of outbox row ``row_id`` carries (stable per row)."""
    return f"<notification-{row_id}@{MAIL_FROM.rpartition('@')[2]}>"


def expected_ids(row_ids: Iterable[int]) -> Counter[str]:
    """Each row's Message-ID, once."""
    return Counter(message_id(row_id) for row_id in row_ids)
