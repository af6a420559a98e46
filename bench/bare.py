"""The ceiling: a bare Flask route under the same gunicorn settings as the app.

Every page's throughput is read as a ratio to this one, measured in the same run: absolute
figures move with the machine and its load, ratios much less.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/bare")
def bare() -> str:
    """A few bytes of text: no template, no database, no session."""
    return "ok"
