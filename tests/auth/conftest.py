"""Fixtures shared by the sign-in tests."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.support.login import use_twilio
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)


@pytest.fixture()
def twilio(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    """SMS through the real twilio client to a local Messages API server."""
    use_twilio(app, twilio_server)
    return twilio_server
