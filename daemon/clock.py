"""The clock shapes of mvsep-watch, in one place: what time sources look like, the real
one, and a manual one for tests.

* :class:`Clock`: ``monotonic()`` for intervals and ``time()`` (wall clock, seconds since the
  epoch) for what the journal stores. The engine and the journal take one.
* :class:`SleepingClock`: ``monotonic()`` and ``sleep()``, the shape the pacer needs.
* :class:`SystemClock` is the real time and satisfies both.
* :class:`ManualClock` satisfies both too; time moves only when a test calls
  :meth:`ManualClock.advance` (``sleep`` blocks until then), so pure logic and threads can
  be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SleepingClock", "SystemClock"]


class Clock(Protocol):
    """Injected time source: ``monotonic()`` for intervals, ``time()`` for the journal."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SleepingClock(Protocol):
    """A time source that can also wait (the pacer's shape)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: ``time.monotonic()``, ``time.time()`` and ``time.sleep()``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to; ``sleep`` blocks until :meth:`advance` passes
    its end. ``monotonic()`` and ``time()`` move together (``time()`` = ``wall_start`` +
    elapsed). Thread-safe."""

    def __init__(self, now: float = 0.0, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = now
        self._wall_offset = wall_start - now
        self._cv = threading.Condition()

    def monotonic(self) -> float:
        with self._cv:
            return self._now

    def time(self) -> float:
        with self._cv:
            return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose end has come."""
        with self._cv:
            self._now += seconds
            self._cv.notify_all()

    def sleep(self, seconds: float) -> None:
        with self._cv:
            target = self._now + seconds
            self._cv.wait_for(lambda: self._now >= target)
