"""``flask --app wsgi notifications send-due`` and ``flask --app wsgi worker``."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db

log = logging.getLogger(__name__)

notifications = AppGroup("notifications", help="Email notifications.")


@notifications.command("send-due")
def notifications_send_due() -> None:
    """Send due notification emails (at each arrival, digests, account emails), with retries."""
    from app.notify.outbox import send_due

    click.echo(str(send_due()))


def run_once() -> tuple[str, str]:
    """One round of the worker: release what is due, then send what is due."""
    from app.cli.jobs import release_round, send_round

    return release_round(), send_round()


@click.command("worker")
@click.option("--interval", default=30, show_default=True, type=click.IntRange(1, 3600),
              help="seconds between rounds")
@click.option("--once", is_flag=True, help="run a single round and exit")
def worker(interval: int, once: bool) -> None:
    """Release held documents and send due notifications, every INTERVAL seconds.

    With REDIS_URL set, the rounds are RQ jobs: each worker process of each server runs an RQ
    worker on the queue "relais" and a scheduler that enqueues each round once across all of
    them. Without it (a laptop), this process runs the rounds itself.

    SIGTERM or SIGINT ends the worker after the current round or job: nothing is cut half-way.
    """
    if current_app.config.get("REDIS_URL"):
        _rq_worker(interval, once)
    else:
        _loop(interval, once)
    click.echo("worker: stopped")


def _loop(interval: int, once: bool) -> None:
    """The rounds in this process, one after the other (no Redis: one worker only)."""
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


def _rq_worker(interval: int, once: bool) -> None:
    """An RQ worker (main thread: RQ's SIGTERM handling) and the round scheduler (a thread)."""
    from app.cli.jobs import (
        JOBS,
        QUEUE,
        RoundScheduler,
        job_queue,
        make_worker,
        redis_connection,
    )

    connection = redis_connection()
    queue = job_queue(connection)
    rq_worker = make_worker(connection, queue, report=click.echo)
    if once:
        # A manual round: enqueue it whatever the schedulers did, then drain the queue.
        for job in JOBS:
            queue.enqueue_call(job, description=job.__name__)
        click.echo(f"worker: one round on the RQ queue {QUEUE!r}")
        rq_worker.work(burst=True)
        return

    def _scheduler_failed(error: Exception) -> None:
        log.warning("worker: could not enqueue a round (%s)", type(error).__name__)

    scheduler = RoundScheduler(connection, queue, interval, _scheduler_failed)
    scheduler.start()
    click.echo(f"worker: RQ queue {QUEUE!r}, a round every {interval} s (SIGTERM stops it)")
    try:
        rq_worker.work()  # returns after SIGTERM/SIGINT, once the current job has finished
    finally:
        scheduler.stop()
        scheduler.join(timeout=10)
