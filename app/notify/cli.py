"""``flask --app wsgi notifications send-due`` and ``flask --app wsgi worker``."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
from flask.cli import AppGroup

from app.extensions import db

notifications = AppGroup("notifications", help="Email notifications.")


@notifications.command("send-due")
def notifications_send_due() -> None:
    """Send due notification emails (at each arrival, digests, account emails), with retries."""
    from app.notify.outbox import send_due

    click.echo(str(send_due()))


def run_once() -> tuple[str, str]:
    """One round of the worker: release what is due, then send what is due."""
    from app.audit.trail import SYSTEM
    from app.dispatch.service import release_due
    from app.notify.outbox import send_due

    delivered = cancelled = 0
    try:
        while True:
            d, c = release_due(SYSTEM)
            db.session.commit()  # the released deliveries and their outbox rows together
            delivered, cancelled = delivered + d, cancelled + c
            if d + c == 0:
                break
    except Exception:
        db.session.rollback()
        raise
    report = send_due()
    return f"released: {delivered} delivered, {cancelled} cancelled", str(report)


@click.command("worker")
@click.option("--interval", default=30, show_default=True, type=click.IntRange(1, 3600),
              help="seconds between rounds")
@click.option("--once", is_flag=True, help="run a single round and exit")
def worker(interval: int, once: bool) -> None:
    """Release held documents and send due notifications, every INTERVAL seconds.

    SIGTERM or SIGINT ends the loop after the current round: nothing is cut half-way.
    """
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"worker: a round every {interval} s (SIGTERM stops it)")
    while not stop.is_set():
        try:
            for line in run_once():
                click.echo(line)
        except Exception as error:  # keep the worker alive; the next round tries again
            db.session.rollback()
            click.echo(f"worker: round failed ({type(error).__name__})", err=True)
        finally:
            db.session.remove()
        if once:
            break
        stop.wait(interval)
    click.echo("worker: stopped")
