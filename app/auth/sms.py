"""SMS senders for sign-in codes: ``console`` (a laptop) and ``twilio`` (the real Twilio client).

The body of a message carries a one-time code: it is never logged, and nor is the auth token.
Phone numbers appear in logs only through :func:`mask_phone`. An :class:`SmsError`'s message is
safe to log and to audit: it names the HTTP status or the kind of network failure, never the
provider's own error text (Twilio's messages may quote the full destination number).
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

DEFAULT_TWILIO_API_BASE = "https://api.twilio.com"
DEFAULT_TIMEOUT_SECONDS = 10.0

_TWILIO_REQUIRED = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER")


class SmsError(Exception):
    """Sending failed or timed out. ``str(error)`` is safe to log: no code, no full number."""

    def __init__(self, reason: str, *, status: int | None = None,
                 provider_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        """The HTTP status the provider answered, when it answered at all."""
        self.provider_code = provider_code
        """The provider's error code (e.g. Twilio's 20003), when it gave one."""


class SmsSender(Protocol):
    def send(self, to: str, body: str) -> str:
        """Send ``body`` to ``to`` (E.164); return the provider's message id or raise SmsError."""
        ...


def mask_phone(number: str) -> str:
    """The number for logs and audit: ``+41791234123`` -> ``+41******123``.

    Only the last 3 digits are shown, and for an international number (a leading ``+`` and at
    least 8 digits) the first 2 digits after the ``+`` (the country, roughly). Separators are
    dropped; each hidden digit becomes one ``*``. A number of 3 digits or fewer is hidden whole.
    """
    stripped = number.strip()
    digits = [c for c in stripped if c.isascii() and c.isdigit()]
    if len(digits) <= 3:
        return "*" * len(digits)
    international = stripped.startswith("+")
    head = "".join(digits[:2]) if international and len(digits) >= 8 else ""
    tail = "".join(digits[-3:])
    hidden = len(digits) - len(head) - len(tail)
    return ("+" if international else "") + head + "*" * hidden + tail


class ConsoleSender:
    """Prints each message to stdout, where a developer reads the code. Never for production."""

    def send(self, to: str, body: str) -> str:
        message_id = f"console-{uuid.uuid4().hex}"
        # stdout on purpose (the developer's terminal); the logging system never sees the body.
        print(f"[SMS to {mask_phone(to)}] {body}", file=sys.stdout, flush=True)
        log.info("SMS printed to the console for %s (id %s)", mask_phone(to), message_id)
        return message_id


class TwilioSender:
    """Sends through the real ``twilio`` client to ``api_base`` (Twilio, a proxy or a test double).

    A new client (and HTTP session) is made for each message and closed afterwards: nothing is
    shared between threads, and no socket is left open.
    """

    def __init__(self, account_sid: str, auth_token: str, from_number: str,
                 api_base: str = DEFAULT_TWILIO_API_BASE,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        for name, value in (("account_sid", account_sid), ("auth_token", auth_token),
                            ("from_number", from_number)):
            # The twilio client would silently fall back to TWILIO_* environment variables.
            if not value:
                raise ValueError(f"TwilioSender needs a non-empty {name}")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        parts = urlsplit(api_base.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("TWILIO_API_BASE must be an http(s) URL, e.g. https://api.twilio.com")
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.api_base = api_base.strip().rstrip("/")
        self.timeout_seconds = float(timeout_seconds)
        self._host = parts.hostname

    def __repr__(self) -> str:  # never show the token
        return f"TwilioSender(account_sid={self.account_sid!r}, api_base={self.api_base!r})"

    def send(self, to: str, body: str) -> str:
        masked = mask_phone(to)
        http_client = TwilioHttpClient(timeout=self.timeout_seconds)
        try:
            client = Client(self.account_sid, self._auth_token, http_client=http_client)
            # TWILIO_API_BASE is the one source of the address: TWILIO_EDGE / TWILIO_REGION in
            # the environment would make the client rewrite its host.
            client.edge = None
            client.region = None
            client.api.base_url = self.api_base
            message = client.api.v2010.account.messages.create(
                to=to, from_=self.from_number, body=body
            )
            sid = message.sid
        except (TwilioRestException, TwilioServiceException) as exc:
            status = _int_or_none(getattr(exc, "status", None))
            code = _int_or_none(getattr(exc, "code", None))
            reason = f"Twilio answered HTTP {status}"
            if code is not None and code != status:
                reason += f" (error {code})"
            raise self._fail(masked, reason, status=status, provider_code=code) from None
        except requests.Timeout:
            raise self._fail(masked, f"no answer from {self._host} within "
                                     f"{self.timeout_seconds:g} s (timeout)") from None
        except requests.ConnectionError:
            raise self._fail(masked, f"could not connect to {self._host}") from None
        except requests.RequestException as exc:
            raise self._fail(masked, f"HTTP request failed ({type(exc).__name__})") from None
        except TwilioException as exc:
            raise self._fail(masked, f"Twilio client error ({type(exc).__name__})") from None
        except ValueError:  # a 2xx answer that is not JSON
            raise self._fail(masked, "Twilio answered with an unreadable body") from None
        finally:
            if http_client.session is not None:
                http_client.session.close()
        if not isinstance(sid, str) or not sid:
            raise self._fail(masked, "Twilio answered without a message id")
        log.info("SMS sent to %s via Twilio (sid %s)", masked, sid)
        return sid

    @staticmethod
    def _fail(masked: str, reason: str, *, status: int | None = None,
              provider_code: int | None = None) -> SmsError:
        log.warning("SMS to %s failed: %s", masked, reason)
        return SmsError(reason, status=status, provider_code=provider_code)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def sender_from_config(config: Mapping[str, Any]) -> SmsSender:
    """The sender chosen by ``SMS_BACKEND`` (``console``, the default, or ``twilio``).

    For ``twilio``: ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN`` and ``TWILIO_FROM_NUMBER`` are
    required; ``TWILIO_API_BASE`` defaults to https://api.twilio.com; the optional
    ``TWILIO_TIMEOUT_SECONDS`` (default 10) bounds each network wait.
    """
    backend = str(config.get("SMS_BACKEND") or "console").strip().lower()
    if backend == "console":
        return ConsoleSender()
    if backend != "twilio":
        raise ValueError(f"SMS_BACKEND must be 'console' or 'twilio', not {backend!r}")
    missing = [key for key in _TWILIO_REQUIRED if not str(config.get(key) or "").strip()]
    if missing:
        raise ValueError(f"SMS_BACKEND=twilio needs {', '.join(missing)} (missing or empty)")
    timeout_raw = config.get("TWILIO_TIMEOUT_SECONDS")
    try:
        timeout = DEFAULT_TIMEOUT_SECONDS if timeout_raw in (None, "") else float(timeout_raw)
    except (TypeError, ValueError):
        raise ValueError("TWILIO_TIMEOUT_SECONDS must be a number of seconds") from None
    return TwilioSender(
        account_sid=str(config["TWILIO_ACCOUNT_SID"]).strip(),
        auth_token=str(config["TWILIO_AUTH_TOKEN"]).strip(),
        from_number=str(config["TWILIO_FROM_NUMBER"]).strip(),
        api_base=str(config.get("TWILIO_API_BASE") or DEFAULT_TWILIO_API_BASE),
        timeout_seconds=timeout,
    )
