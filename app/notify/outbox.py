"""The outbox: rows written in the transaction that makes documents visible, sent later.

Sending claims each due row with a compare-and-set on ``next_attempt_at`` (a lease; rows are
read with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), commits the claim, sends, and marks the
row sent at once. A failed attempt is retried after a growing delay; after the last attempt
the row is marked failed and listed for the desk. So a row is never lost, and two workers
never send it both; only a crash between the SMTP server's acceptance and the commit of
``sent_at`` could repeat an email, and then with the same Message-ID.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from app.audit import Actor, record
from app.extensions import db
from app.models import Delivery, Doctor, EmailChange, Notification
from app.models.base import ZURICH, utcnow
from app.notify.mail import MailError, build_message, send_message

log = logging.getLogger(__name__)

#: At each arrival: the arrivals of this window gather into one email.
GATHER_WINDOW = timedelta(minutes=2)
#: Delay before each retry; after the last one the row is marked failed.
RETRY_DELAYS = (
    timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1),
    timedelta(hours=4),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
#: How long a claimed row belongs to its sender before another may take it again.
LEASE = timedelta(minutes=10)


def _open_key(doctor_id: int) -> str:
    return f"arrival:{doctor_id}:open"


def _insert(table: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


# --- writing ------------------------------------------------------------------------------


def note_arrivals(deliveries: Iterable[Delivery], now: datetime | None = None) -> int:
    """Deliveries just became visible: gather them into each doctor's pending arrival email.

    In the caller's transaction. Only doctors notified at each arrival get a row; digests are
    counted from the deliveries themselves at the digest hour. Returns the rows touched.
    """
    now = now or utcnow()
    per_doctor: dict[int, int] = {}
    for delivery in deliveries:
        if delivery.doctor_id is not None and delivery.visible_to(delivery.doctor_id):
            per_doctor[delivery.doctor_id] = per_doctor.get(delivery.doctor_id, 0) + 1
    if not per_doctor:
        return 0
    notified = db.session.scalars(
        select(Doctor.id).where(
            Doctor.id.in_(per_doctor), Doctor.notification_mode == "immediate",
            Doctor.email.is_not(None),
        )
    ).all()
    for doctor_id in sorted(notified):  # one order everywhere: no deadlock between ingests
        count = per_doctor[doctor_id]
        due = now + GATHER_WINDOW
        statement = _insert(Notification.__table__).values(
            doctor_id=doctor_id, kind="arrival", idempotency_key=_open_key(doctor_id),
            count=count, created_at=now, due_at=due, attempts=0, next_attempt_at=due,
        )
        # One open arrival row per doctor (the unique key): later arrivals add to its count.
        statement = statement.on_conflict_do_update(
            index_elements=["idempotency_key"],
            set_={"count": Notification.__table__.c.count + count},
        )
        db.session.execute(statement)
    return len(notified)


def queue_email(doctor: Doctor, kind: str, key: str, *, to_address: str | None = None,
                secret: str | None = None, now: datetime | None = None) -> Notification:
    """An account email (address confirmation, change notice), due at once. Caller commits."""
    now = now or utcnow()
    row = Notification(
        doctor_id=doctor.id, kind=kind, idempotency_key=key, count=0, to_address=to_address,
        secret=secret, created_at=now, due_at=now, attempts=0, next_attempt_at=now,
    )
    db.session.add(row)
    db.session.flush()
    return row


def drop_open_arrivals(doctor: Doctor) -> None:
    """The doctor no longer wants an email at each arrival: the gathering one goes."""
    db.session.execute(
        delete(Notification).where(Notification.idempotency_key == _open_key(doctor.id))
    )


def digest_cutoff(doctor: Doctor, now: datetime) -> datetime:
    """Today's digest time for this doctor, in UTC."""
    local = now.astimezone(ZURICH)
    return local.replace(hour=doctor.digest_hour, minute=0, second=0, microsecond=0)


def schedule_digests(now: datetime | None = None) -> int:
    """Write the digest rows whose hour has come (Europe/Zurich). Caller commits.

    Each counts the visible deliveries since the doctor's last digest; none, no email. The key
    (doctor, local date) makes a second run on the same day write nothing.
    """
    now = now or utcnow()
    written = 0
    doctors = db.session.scalars(
        select(Doctor).where(Doctor.notification_mode == "digest", Doctor.email.is_not(None),
                             Doctor.state == "active").order_by(Doctor.id)
    ).all()
    for doctor in doctors:
        cutoff = digest_cutoff(doctor, now)
        if now < cutoff:
            continue
        since = doctor.last_digest_at
        if since is not None and since >= cutoff:
            continue  # today's is written
        query = select(func.count(Delivery.id)).where(
            Delivery.visible_to(doctor.id), Delivery.delivered_at <= now,
        )
        if since is not None:
            query = query.where(Delivery.delivered_at > since)
        count = db.session.scalar(query) or 0
        doctor.last_digest_at = now
        if count == 0:
            continue
        key = f"digest:{doctor.id}:{cutoff.date().isoformat()}"
        statement = _insert(Notification.__table__).values(
            doctor_id=doctor.id, kind="digest", idempotency_key=key, count=count,
            created_at=now, due_at=now, attempts=0, next_attempt_at=now,
        ).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(
            Notification.__table__.c.id)
        # Counted from RETURNING: psycopg's rowcount is -1 for this statement.
        written += len(db.session.execute(statement).all())
    db.session.flush()
    return written


# --- sending --------------------------------------------------------------------------------


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    digests: int = 0

    def __str__(self) -> str:
        return (f"notifications: {self.sent} sent, {self.retried} to retry, "
                f"{self.failed} failed, {self.digests} digest(s) written")


def _due_ids(now: datetime, batch: int) -> Sequence[int]:
    return db.session.scalars(
        select(Notification.id)
        .where(Notification.sent_at.is_(None), Notification.failed_at.is_(None),
               Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()


def _claim(row_id: int, now: datetime) -> Notification | None:
    """Take the row for LEASE, closing an arrival row to new arrivals. Commits the claim."""
    row = db.session.get(Notification, row_id)
    if row is None:
        return None
    values: dict[str, Any] = {"next_attempt_at": now + LEASE}
    if row.kind == "arrival":
        values["idempotency_key"] = f"arrival:{row.doctor_id}:{row.id}"
    result = db.session.execute(
        update(Notification)
        .where(Notification.id == row_id, Notification.sent_at.is_(None),
               Notification.failed_at.is_(None), Notification.next_attempt_at <= now)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another sender got there first
    db.session.refresh(row)
    return row


def send_at_once(row_id: int, now: datetime) -> str | None:
    """Claim one row and send it now (an account email, right after its commit): the outcome,
    or None when another sender has it. A failure is retried by the worker as usual."""
    row = _claim(row_id, now)
    return send_one(row, now) if row is not None else None


def _error_text(error: Exception) -> str:
    """The kind of failure and the SMTP code: never an address nor any content."""
    code = getattr(error, "smtp_code", None)
    return f"{type(error).__name__}" + (f" {code}" if code else "")


def send_one(row: Notification, now: datetime) -> str:
    """Send a claimed row: ``sent``, ``retry`` or ``failed``. Commits the outcome."""
    try:
        message = build_message(row, current_app.config)
        send_message(message, current_app.config)
    except (OSError, smtplib.SMTPException, MailError) as error:
        row.attempts += 1
        row.last_error = _error_text(error)[:200]
        if isinstance(error, MailError) or row.attempts >= MAX_ATTEMPTS:
            row.failed_at = now
            row.secret = None
            outcome = "failed"
        else:
            row.next_attempt_at = now + RETRY_DELAYS[row.attempts - 1]
            outcome = "retry"
        log.warning("notification %s attempt %s: %s", row.id, row.attempts, row.last_error)
        db.session.commit()
        return outcome
    row.attempts += 1
    row.sent_at = utcnow()
    row.secret = None  # the token's only copy outside the doctor's mailbox goes
    row.last_error = None
    db.session.commit()
    return "sent"


def send_due(now: datetime | None = None, batch: int = 100) -> SendReport:
    """Write today's digests, then send every due row. Commits as it goes."""
    now = now or utcnow()
    report = SendReport()
    report.digests = schedule_digests(now)
    db.session.commit()
    while True:
        ids = _due_ids(now, batch)
        db.session.commit()  # release the row locks: each row is claimed on its own
        if not ids:
            break
        for row_id in ids:
            row = _claim(row_id, now)
            if row is None:
                continue
            outcome = send_one(row, now)
            if outcome == "sent":
                report.sent += 1
            elif outcome == "retry":
                report.retried += 1
            else:
                report.failed += 1
        if len(ids) < batch:
            break
    return report


def failed_notifications(limit: int | None = None) -> Sequence[Notification]:
    """Permanent failures, newest first: the desk's list (with each row's doctor)."""
    statement = (
        select(Notification).where(Notification.failed_at.is_not(None))
        .options(selectinload(Notification.doctor))
        .order_by(Notification.failed_at.desc(), Notification.id.desc())
    )
    if limit is not None:
        statement = statement.limit(limit)
    return db.session.scalars(statement).all()


def failed_count() -> int:
    """How many emails failed for good (the desk's first page links to them)."""
    return db.session.scalar(
        select(func.count(Notification.id)).where(Notification.failed_at.is_not(None))
    ) or 0


# --- the desk's resend ----------------------------------------------------------------------

#: Why a failed email cannot be put back in the queue.
NOT_FAILED = "not_failed"
LINK_GONE = "link_gone"
DOCTOR_INACTIVE = "doctor_inactive"
NO_ADDRESS = "no_address"
NOTIFICATIONS_OFF = "notifications_off"


class ResendRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resend_refusal(row: Notification, now: datetime | None = None) -> str | None:
    """Why this failed row must not be sent again, or None when it may.

    An address confirmation cannot go again: its token was wiped when it failed (only the
    pending change keeps a hash), and the link expires after a day anyway; the doctor asks
    for a new one from Mon profil. The other kinds need an active doctor and an address.
    """
    now = now or utcnow()
    if row.failed_at is None or row.sent_at is not None:
        return NOT_FAILED
    if row.kind == "email_confirm":
        change_id = row.idempotency_key.rpartition(":")[2]
        change = (db.session.get(EmailChange, int(change_id)) if change_id.isdigit()
                  else None)
        if (row.secret is None or change is None or change.used_at is not None
                or change.expires_at <= now):
            return LINK_GONE
    if row.doctor.state != "active":
        return DOCTOR_INACTIVE
    if not (row.to_address or row.doctor.email):
        return NO_ADDRESS
    if row.kind in ("arrival", "digest") and row.doctor.notification_mode == "none":
        return NOTIFICATIONS_OFF
    return None


def requeue_failed(row: Notification, actor: Actor, now: datetime | None = None) -> None:
    """Put a failed email back in the queue, due at once (the worker sends it). Caller commits.

    A compare-and-set on ``failed_at``: two desks clicking at once requeue it once, and the
    second is told it is no longer failed. Audited as ``notification.resent``.
    """
    now = now or utcnow()
    reason = resend_refusal(row, now)
    if reason is not None:
        raise ResendRefused(reason)
    previous_error = row.last_error
    result = db.session.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.failed_at.is_not(None),
               Notification.sent_at.is_(None))
        .values(failed_at=None, attempts=0, next_attempt_at=now, last_error=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ResendRefused(NOT_FAILED)
    db.session.refresh(row)
    record(actor, "notification.resent", target=f"doctor:{row.doctor.gln}",
           details={"notification": row.id, "kind": row.kind,
                    "previous_error": previous_error})
