"""Background jobs with RQ, when ``REDIS_URL`` is set: release held documents, send emails.

``flask --app wsgi worker`` runs, in each worker process of each server:

- an RQ worker on the queue :data:`QUEUE` (a :class:`rq.SimpleWorker`: jobs run in the worker
  process itself, in the app context of the command, with no fork per job: the jobs are short
  database work, and a forked child must never reuse its parent's PostgreSQL connections);
- a scheduler thread that, at the start of each round of ``interval`` seconds, enqueues one
  :func:`release_due_job` and one :func:`send_due_job`. Rounds are numbered from the epoch
  (``int(time / interval)``), so every process on every server agrees on the current one, and a
  Redis key per round (``SET NX PX``) lets exactly one process enqueue it.

Both jobs are safe even if two ran at once (``release_due`` decides each delivery once under a
row lock, ``send_due`` claims rows with a lease), so the lock is about not doing the work
twice, not about correctness. A job not started within its round is discarded: the next round's
job does the same work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, has_app_context
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from app.extensions import db

log = logging.getLogger(__name__)

#: The one queue of Relais's jobs.
QUEUE = "relais"

#: Prefix of the per-round lock keys.
ROUND_KEY = "relais:jobs:round"

T = TypeVar("T")


# --- the jobs -----------------------------------------------------------------------------------


def _in_app(work: Callable[[], T]) -> T:
    """Run ``work`` in an app context: the worker's own, or a new app (``rq worker`` alone)."""
    if has_app_context():
        try:
            return work()
        finally:
            db.session.remove()  # a long-lived worker must not carry a session between jobs
    from app import create_app

    with create_app().app_context():
        try:
            return work()
        finally:
            db.session.remove()


def release_round() -> str:
    """Release every held delivery whose time has come, committing batch by batch."""
    from app.audit.trail import SYSTEM
    from app.dispatch.release import release_due

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
    return f"released: {delivered} delivered, {cancelled} cancelled"


def send_round() -> str:
    """Send the due notification emails (with their retries)."""
    from app.notify.outbox import send_due

    return str(send_due())


def release_due_job() -> str:
    """The RQ job of ``dispatch release-due``. Returns counts only: results stay in Redis."""
    result = _in_app(release_round)
    log.info("job release_due: %s", result)
    return result


def send_due_job() -> str:
    """The RQ job of ``notifications send-due``."""
    result = _in_app(send_round)
    log.info("job send_due: %s", result)
    return result


JOBS: tuple[Callable[[], str], ...] = (release_due_job, send_due_job)


# --- Redis, the queue and the rounds ------------------------------------------------------------


def redis_connection(url: str | None = None) -> Redis:
    """The Redis of ``REDIS_URL`` (RQ stores jobs as bytes: no response decoding)."""
    return Redis.from_url(url or current_app.config["REDIS_URL"])


def job_queue(connection: Redis, name: str = QUEUE) -> Queue:
    return Queue(name, connection=connection)


def round_number(now: float, interval: int) -> int:
    """The round that ``now`` falls in: the same on every server whose clock is right."""
    return int(now // interval)


def claim_round(connection: Redis, interval: int, number: int) -> bool:
    """Take the lock of round ``number``; True for exactly one caller, whoever races.

    The key outlives its round (two intervals), so that a server whose clock is a little
    behind does not enqueue a round again after the key of another expired.
    """
    key = f"{ROUND_KEY}:{interval}:{number}"
    return bool(connection.set(key, "1", nx=True, px=interval * 2000))


def enqueue_round(connection: Redis, queue: Queue, interval: int, number: int) -> bool:
    """Enqueue the round's jobs if this caller won its lock; whether it did."""
    if not claim_round(connection, interval, number):
        return False
    for job in JOBS:
        queue.enqueue_call(
            job,
            timeout=max(interval, 300),  # a long release after a DPI burst may take minutes
            ttl=interval,  # not started within its round: the next round does the work
            result_ttl=interval * 10,
            failure_ttl=7 * 24 * 3600,
            description=job.__name__,  # never the arguments (there are none, and none ever)
        )
    return True


class RoundScheduler(threading.Thread):
    """Enqueue each round at its start, until stopped."""

    def __init__(self, connection: Redis, queue: Queue, interval: int,
                 on_error: Callable[[Exception], None]) -> None:
        super().__init__(name="relais-scheduler", daemon=True)
        self.connection = connection
        self.queue = queue
        self.interval = interval
        self.on_error = on_error
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.time()
            number = round_number(now, self.interval)
            try:
                enqueue_round(self.connection, self.queue, self.interval, number)
            except Exception as error:  # Redis away for a moment: the next round tries again
                self.on_error(error)
            # Wake at the start of the next round, as every other scheduler does.
            self.stopping.wait(max((number + 1) * self.interval - time.time(), 0.05))

    def stop(self) -> None:
        self.stopping.set()


class RelaisWorker(SimpleWorker):
    """The RQ worker of Relais: in-process jobs (see the module's docstring for why).

    ``report`` receives each finished job's result line ("released: ...", "notifications:
    ..."), so that the command prints the same lines whether rounds run as jobs or in a loop.
    """

    report: Callable[[str], None] | None = None

    def execute_job(self, job: Job, queue: Queue) -> None:
        super().execute_job(job, queue)
        if self.report is not None and job.get_status(refresh=True) == JobStatus.FINISHED:
            result = job.return_value()
            if isinstance(result, str):
                self.report(result)


def make_worker(connection: Redis, queue: Queue,
                report: Callable[[str], None] | None = None) -> RelaisWorker:
    worker = RelaisWorker([queue], connection=connection)
    worker.report = report
    return worker
