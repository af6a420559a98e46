"""The real SMTP server of the notification tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from tests.notify.smtp_server import Smtp, serving


@pytest.fixture()
def smtp(app: Flask) -> Iterator[Smtp]:
    with serving(app) as server:
        yield server
