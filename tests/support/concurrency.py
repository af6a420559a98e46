"""Racing threads in tests, without a way to hang.

A race test starts several threads that do their setup, meet at a barrier, then do the racing
step together. Two things make such tests hang a whole suite: a thread that fails before the
barrier leaves the others waiting for it forever, and a ``join()`` without a timeout waits for a
thread that never ends. ``race`` closes both: every wait has a deadline, a thread that fails
breaks the barrier for the others, and the first real exception of a thread is raised in the
test's own thread, with its traceback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

T = TypeVar("T")

#: Long enough for a busy 2-core CI machine; a healthy race takes well under a second.
DEFAULT_TIMEOUT = 60.0


class Start:
    """Given to each racer: calling it waits (with a deadline) until every racer is ready."""

    def __init__(self, barrier: threading.Barrier, timeout: float) -> None:
        self._barrier = barrier
        self._timeout = timeout

    def __call__(self) -> None:
        self._barrier.wait(timeout=self._timeout)


class _Outcome(Generic[T]):
    def __init__(self) -> None:
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None


class RaceTimeout(AssertionError):
    """A racer was still running at the deadline."""


def race(racers: Sequence[Callable[[Start], T]], timeout: float = DEFAULT_TIMEOUT) -> list[T]:
    """Run each racer in its own thread and return their results, in the racers' order.

    Each racer receives ``start`` and must call it once its setup is done: all racers are then
    released together. The racers must also end within ``timeout`` seconds in all, or
    ``RaceTimeout`` is raised (the stuck threads are daemons, so they cannot keep the test
    process alive). If a racer raises, the barrier is broken for the others and the exception
    is raised here, in preference to the ``BrokenBarrierError`` it causes elsewhere.
    """
    barrier = threading.Barrier(len(racers))
    start = Start(barrier, timeout)
    outcomes: list[_Outcome[T]] = [_Outcome() for _ in racers]

    def run(racer: Callable[[Start], T], outcome: _Outcome[T]) -> None:
        try:
            outcome.value = racer(start)
        except BaseException as error:  # handed to the test's thread below
            outcome.error = error
            barrier.abort()
        finally:
            outcome.done = True

    threads = [
        threading.Thread(target=run, args=(racer, outcome), daemon=True,
                         name=f"racer-{number}")
        for number, (racer, outcome) in enumerate(zip(racers, outcomes, strict=True))
    ]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        barrier.abort()
        raise RaceTimeout(f"still running after {timeout:.0f} s: {', '.join(stuck)}")
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return [cast(T, outcome.value) for outcome in outcomes]
