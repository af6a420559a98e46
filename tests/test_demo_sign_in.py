"""The sign-ins `make run` prints work as printed: followed literally, each one signs in."""

from __future__ import annotations

import re

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from tests.support.pages import csrf_token


@pytest.fixture()
def printed(app: Flask) -> str:
    runner: FlaskCliRunner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    return result.output


def _post(client: FlaskClient, path: str, **fields: str) -> str:
    response = client.post(path, data={"csrf_token": csrf_token(client.get(path)), **fields})
    assert response.status_code == 303, (path, response.status_code)
    return response.headers["Location"]


def _signed_in_as(client: FlaskClient, name: str) -> None:
    html = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Se déconnecter" in html
    assert name in html


def test_the_printed_sms_sign_in_works(
    printed: str, client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    line = next(x for x in printed.splitlines() if "SMS sign-in" in x)
    found = re.search(r"(/auth/login), login (\S+), password (\S+);", line)
    assert found is not None, line
    path, login, password = found.groups()
    capsys.readouterr()

    assert _post(client, path, login=login, password=password) == "/auth/code"
    # The console SMS backend prints the message in the terminal, as the line says.
    sms = capsys.readouterr().out
    code = re.search(r"\b(\d{6})\b", sms)
    assert code is not None, "no code printed in the terminal"
    assert _post(client, "/auth/code", code=code.group(1)) == "/"
    _signed_in_as(client, "Claire Muller")


@pytest.mark.parametrize("login", ["accueil", "secretariat"])
def test_the_printed_staff_sign_ins_work(printed: str, client: FlaskClient, login: str) -> None:
    line = next(x for x in printed.splitlines() if f"login {login}," in x)
    found = re.search(r"login (\S+), password (\S+), .*TOTP\('([A-Z2-7]+)'\)", line)
    assert found is not None, line
    _, password, secret = found.groups()

    assert _post(client, "/auth/login", login=login, password=password) == "/auth/totp"
    assert _post(client, "/auth/totp", code=pyotp.TOTP(secret).now()) == "/"
    _signed_in_as(client, login)
