"""SMS senders: the real twilio client against a local Twilio-compatible server, and the console."""

from __future__ import annotations

import base64
import logging
import socket
from typing import Any

import pytest

from app.auth.sms import (
    ConsoleSender,
    SmsError,
    TwilioSender,
    mask_phone,
    sender_from_config,
)
from tests.support.twilio_server import (  # noqa: F401 (the fixture "twilio_server")
    DEFAULT_TOKEN,
    TwilioServer,
    twilio_server_fixture,
)

TO = "+41791234567"
FROM = "+41225550100"
BODY = "Relais : votre code est 482913. Il expire dans 5 minutes."
CODE = "482913"


@pytest.fixture(autouse=True)
def _no_twilio_host_rewrite(monkeypatch: pytest.MonkeyPatch) -> None:
    # With either set, the twilio client rewrites the host: only 127.0.0.1 may ever be reached.
    for name in ("TWILIO_EDGE", "TWILIO_REGION", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):  # an HTTP proxy from the environment is not used
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def sender_for(server: TwilioServer, **changes: Any) -> TwilioSender:
    arguments: dict[str, Any] = {
        "account_sid": server.account_sid,
        "auth_token": server.auth_token,
        "from_number": FROM,
        "api_base": server.base_url,
        "timeout_seconds": 5,
    }
    arguments.update(changes)
    return TwilioSender(**arguments)


def assert_safe(text: str) -> None:
    """Nothing secret in a message or a log line: no code, no token, no full number."""
    assert CODE not in text
    assert BODY not in text
    assert DEFAULT_TOKEN not in text
    assert "wrong-token-secret" not in text
    assert TO not in text
    assert TO[1:] not in text


# --- Twilio ----------------------------------------------------------------------------------


def test_message_arrives_with_to_from_body_and_basic_auth(twilio_server: TwilioServer) -> None:
    message_id = sender_for(twilio_server).send(TO, BODY)

    [message] = twilio_server.messages
    assert (message.to, message.from_, message.body) == (TO, FROM, BODY)
    assert message.account_sid == twilio_server.account_sid
    assert (message.auth_username, message.auth_password) == (
        twilio_server.account_sid, twilio_server.auth_token)
    assert message.user_agent.startswith("twilio-python/9.13.0")
    assert message_id == message.sid
    assert message_id.startswith("SM") and len(message_id) == 34


def test_trailing_slash_in_api_base(twilio_server: TwilioServer) -> None:
    sender = sender_for(twilio_server, api_base=twilio_server.base_url + "/")
    assert sender.send(TO, BODY) == twilio_server.last_message().sid


def test_each_message_gets_its_own_id(twilio_server: TwilioServer) -> None:
    sender = sender_for(twilio_server)
    ids = {sender.send(TO, BODY), sender.send(TO, BODY)}
    assert len(ids) == 2
    assert len(twilio_server.messages) == 2


def test_edge_and_region_in_environment_do_not_move_the_host(
    twilio_server: TwilioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the client to honour these, it would aim at "127.sydney.au1.1:port" and fail.
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    assert sender_for(twilio_server).send(TO, BODY) == twilio_server.last_message().sid


def test_wrong_token_gives_401_without_the_token(
    twilio_server: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SmsError) as raised:
        sender_for(twilio_server, auth_token="wrong-token-secret").send(TO, BODY)

    assert "401" in str(raised.value)
    assert raised.value.status == 401
    assert raised.value.provider_code == 20003
    assert_safe(str(raised.value))
    assert_safe(caplog.text)
    assert twilio_server.messages == []
    assert twilio_server.request_count == 1


def test_server_error_raises(twilio_server: TwilioServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    twilio_server.fail_with(500)
    with pytest.raises(SmsError) as raised:
        sender_for(twilio_server).send(TO, BODY)

    assert raised.value.status == 500
    assert "500" in str(raised.value)
    assert_safe(str(raised.value))
    assert_safe(caplog.text)
    assert twilio_server.messages == []


def test_server_recovers_after_reset(twilio_server: TwilioServer) -> None:
    twilio_server.fail_with(503)
    sender = sender_for(twilio_server)
    with pytest.raises(SmsError):
        sender.send(TO, BODY)
    twilio_server.reset()
    assert sender.send(TO, BODY) == twilio_server.last_message().sid


def test_hung_server_times_out(
    twilio_server: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    twilio_server.hang(30)
    with pytest.raises(SmsError) as raised:
        sender_for(twilio_server, timeout_seconds=1).send(TO, BODY)

    assert "timeout" in str(raised.value)
    assert raised.value.status is None
    assert_safe(str(raised.value))
    assert_safe(caplog.text)


def test_connection_refused_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:  # a port that was free a moment ago, closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = TwilioSender(account_sid="AC" + "1" * 32, auth_token=DEFAULT_TOKEN,
                          from_number=FROM, api_base=f"http://127.0.0.1:{port}",
                          timeout_seconds=2)
    with pytest.raises(SmsError) as raised:
        sender.send(TO, BODY)

    assert "could not connect" in str(raised.value)
    assert_safe(str(raised.value))
    assert_safe(caplog.text)


def test_twilio_logs_only_the_masked_number(
    twilio_server: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sid = sender_for(twilio_server).send(TO, BODY)
    assert mask_phone(TO) in caplog.text
    assert sid in caplog.text
    assert_safe(caplog.text)
    assert_safe(repr(sender_for(twilio_server)))


def test_twilio_sender_refuses_empty_credentials_and_bad_base() -> None:
    good: dict[str, Any] = {"account_sid": "AC1", "auth_token": "t", "from_number": FROM}
    for name in ("account_sid", "auth_token", "from_number"):
        with pytest.raises(ValueError, match=name):
            TwilioSender(**{**good, name: ""})
    with pytest.raises(ValueError, match="TWILIO_API_BASE"):
        TwilioSender(**good, api_base="api.twilio.com")
    with pytest.raises(ValueError, match="timeout"):
        TwilioSender(**good, timeout_seconds=0)


def test_server_rejects_bad_basic_auth_header(twilio_server: TwilioServer) -> None:
    # The test double itself: a malformed header is refused like a wrong token.
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", twilio_server.port, timeout=5)
    try:
        bad = base64.b64encode(b"no-colon").decode()
        path = f"/2010-04-01/Accounts/{twilio_server.account_sid}/Messages.json"
        connection.request("POST", path,
                           body="To=%2B41791234567&From=%2B41225550100&Body=x",
                           headers={"Authorization": f"Basic {bad}",
                                    "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status == 401
    assert b'"code": 20003' in payload
    assert twilio_server.messages == []


# --- configuration ---------------------------------------------------------------------------


def test_config_chooses_console_by_default_and_on_request() -> None:
    assert isinstance(sender_from_config({}), ConsoleSender)
    assert isinstance(sender_from_config({"SMS_BACKEND": "console"}), ConsoleSender)
    assert isinstance(sender_from_config({"SMS_BACKEND": " Console "}), ConsoleSender)


def test_config_chooses_twilio(twilio_server: TwilioServer) -> None:
    sender = sender_from_config(twilio_server.config(TWILIO_TIMEOUT_SECONDS="3"))
    assert isinstance(sender, TwilioSender)
    assert sender.api_base == twilio_server.base_url
    assert sender.timeout_seconds == 3
    assert sender.send(TO, BODY) == twilio_server.last_message().sid


def test_config_twilio_defaults_to_the_real_api_base() -> None:
    sender = sender_from_config({"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "AC1",
                                 "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": FROM})
    assert isinstance(sender, TwilioSender)
    assert sender.api_base == "https://api.twilio.com"
    assert sender.timeout_seconds == 10


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                     "TWILIO_FROM_NUMBER"])
def test_config_names_the_missing_key(missing: str) -> None:
    config = {"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "AC1",
              "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": FROM}
    del config[missing]
    with pytest.raises(ValueError, match=missing):
        sender_from_config(config)
    with pytest.raises(ValueError, match=missing):
        sender_from_config({**config, missing: "  "})


def test_config_refuses_an_unknown_backend_and_a_bad_timeout() -> None:
    with pytest.raises(ValueError, match="SMS_BACKEND"):
        sender_from_config({"SMS_BACKEND": "carrier-pigeon"})
    with pytest.raises(ValueError, match="TWILIO_TIMEOUT_SECONDS"):
        sender_from_config({"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "AC1",
                            "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": FROM,
                            "TWILIO_TIMEOUT_SECONDS": "soon"})


# --- console ---------------------------------------------------------------------------------


def test_console_prints_the_body_and_logs_only_the_masked_number(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    message_id = ConsoleSender().send(TO, BODY)

    out = capsys.readouterr().out
    assert BODY in out
    assert mask_phone(TO) in out
    assert TO not in out
    assert message_id.startswith("console-")
    assert caplog.records, "the console sender logs that it sent"
    assert mask_phone(TO) in caplog.text
    assert_safe(caplog.text)


def test_console_ids_are_unique(capsys: pytest.CaptureFixture[str]) -> None:
    sender = ConsoleSender()
    assert sender.send(TO, BODY) != sender.send(TO, BODY)
    capsys.readouterr()


# --- mask_phone ------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "masked"), [
    ("+41791234567", "+41******567"),
    ("+417912345123", "+41*******123"),
    ("+41 79 123 45 67", "+41******567"),
    ("+33612345678", "+33******678"),
    ("+12025550123", "+12******123"),
    ("0791234567", "*******567"),
    ("+4179", "+*179"),  # short: no country part kept, last 3 shown
    ("1234", "*234"),
    ("123", "***"),
    ("12", "**"),
    ("", ""),
    ("  ", ""),
])
def test_mask_phone(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


def test_mask_phone_never_shows_more_than_five_digits() -> None:
    for number in ("+41791234567", "+8613912345678", "+3531234567890123", "079 123 45 67"):
        shown = [c for c in mask_phone(number) if c.isdigit()]
        assert len(shown) <= 5
