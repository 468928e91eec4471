"""The one shared API pacer, and the adaptive poll policy (pure maths).

Budget arithmetic (the benchmark: premium account, 10 slots, jobs of 30 ± 10 s)
-------------------------------------------------------------------------------
MVSEP allows 60 API calls a minute per token (``X-RateLimit-Limit: 60``, HTTP 429 beyond,
a Laravel fixed 60-s window). The pacer uses at most ``limit - safety_margin`` = 58 of them.

Ten slots with jobs of ~30 s (+1 s upload) finish ~20 jobs a minute, so creates alone take
~20 of those calls and leave ~38 a minute for ``get``: under two polls per job. Polling
every job every 5 s would need 10 x 12 = 120 calls a minute: impossible. So polls are spent
where they shorten the time a *finished* job still holds its slot: none while the job
certainly runs, the first at 0.8 E (E = expected duration), then every 0.2 E, then every
0.1 x elapsed once overdue; a job deep in a queue is polled slowly. For uniform 20-40 s jobs
that costs ~2.1 polls per job and the daemon sees a done ~5 s after MVSEP finished it (with a
known spread the floor is ~3 s). ``bench/bench_pacing.py`` simulates it: held utilisation
~91% (the tail of the last jobs caps it at ~90% even with instant detection), at-MVSEP
utilisation ~78%, zero 429s.

Pacer
-----
:class:`Pacer` implements the client's ``RequestGate``. Rules, in order:

* **Window**: every request holds a place from its grant until ``window_s + guard_s`` after
  its answer (``observe``) - until then, while it is in flight. A request of kind ``k`` is
  granted only while fewer than ``cap(k)`` places are held. Why this is exact: the server
  counts a request at some time between our grant and its answer. Take any server window
  ``[S, S + window_s)`` and, of the requests it counted, the one granted last, at ``g``:
  every other one was answered at or after ``S > g - window_s``, so it still held its place
  at ``g``; hence the window counted at most ``cap`` requests - whatever the latency, upload
  times included, and at any window phase (fixed or sliding). ``guard_s`` (default 0) only
  adds slack. Instantaneous requests (``try_acquire`` without ``request_id``) reduce to a
  sliding window over grant times.
* **Reserve**: polls (``get``, ``get_remote``) are granted only while fewer than
  ``limit - safety_margin - poll_reserve`` places are held; the last ``poll_reserve`` are
  kept for ``create``/``cancel``/``history``/``user``/... so that a freed slot is refilled
  at once instead of queueing behind polls.
* **Server says stop**: ``Retry-After`` blocks every kind until it has passed; ``Remaining:
  0`` without ``Retry-After`` blocks for ``window_s`` (a fixed window resets within that). A
  ``Remaining`` lower than our own count (another client on the same token) adds "phantom"
  places held from ``now`` so that we slow down too.
* **Limit**: starts at ``limit`` and follows ``X-RateLimit-Limit`` whenever it is seen.
* **Order**: blocking callers of :meth:`Pacer.acquire` are served strictly by (priority,
  arrival): non-poll kinds first, FIFO within a priority. A poll's constraints include the
  others', so head-of-line order never leaves capacity unused.

In flight: ``acquire`` ties the request to the calling thread; that thread's next
``observe`` (the client calls it after every answer) or next ``acquire`` (the previous
request is over, answered or not) ends it; ``max_in_flight_s`` ends a forgotten one.

PollPolicy and DurationEstimator
--------------------------------
:class:`PollPolicy` is pure: status, progress figures, elapsed and expected duration in;
seconds until the next ``get`` of that job out (jittered by the injected ``random.Random``).
:class:`DurationEstimator` keeps the EWMA of observed durations per ``sep_type`` that
feeds ``expected_s``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from daemon.errors import Stopping

POLL_KINDS: frozenset[str] = frozenset({"get", "get_remote"})
"""Request kinds that are polls: lower priority and kept out of the reserve."""

_TURN_WAIT_S = 0.05
"""Least wait ``try_acquire`` answers while a blocked ``acquire`` caller goes first."""

_RECHECK_S = 0.25
"""Real seconds a blocked caller not first in line waits at most between checks; it is
notified whenever the line moves, so this is only a safety net."""


class Clock(Protocol):
    """Time source of the pacer: tests pass a fake one whose ``sleep`` advances ``monotonic``."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock (``time.monotonic`` / ``time.sleep``)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


@dataclass(frozen=True)
class PacerStats:
    """A snapshot of the pacer's counters."""

    granted: Mapping[str, int]
    """Requests granted, per kind (``acquire`` and ``try_acquire``)."""
    total_wait_s: float
    """Seconds spent blocked in ``acquire``, summed over callers."""
    waited: int
    """``acquire`` calls that had to wait at all."""
    in_flight: int
    """Requests granted and not answered yet."""
    queued: int
    """Callers blocked in ``acquire`` right now."""
    phantoms: int
    """Grants added because the server counted more requests than we made."""
    server_blocks: int
    """``Retry-After`` or ``Remaining: 0`` answers seen."""


class Pacer:
    """Thread-safe shared pacer of all MVSEP API calls (a ``RequestGate``).

    Keyword arguments (defaults in brackets):

    * ``limit`` [60]: requests per window until ``X-RateLimit-Limit`` says otherwise.
    * ``window_s`` [60.0]: the server's window.
    * ``guard_s`` [0.0]: added to the window (the proof in the module docstring needs none).
    * ``safety_margin`` [2]: places of the window never used (other clients on the token).
    * ``poll_reserve`` [4]: places polls may not use, kept for creates and the rest.
    * ``max_in_flight_s`` [1800.0]: a request never answered (its thread gone) stops holding
      its place this long after its grant (above the client's 1200-s upload timeout).
    * ``poll_kinds`` [``get``, ``get_remote``]: the kinds that are polls.
    * ``clock`` [None]: ``None`` uses real time and condition waits; a :class:`Clock` is
      slept on instead (tests, simulations).
    * ``on_grant`` [None]: called as ``on_grant(kind, now)`` for every grant, under the
      pacer's lock and in grant order (metrics, debug logs, tests); keep it quick.
    """

    def __init__(
        self,
        *,
        limit: int = 60,
        window_s: float = 60.0,
        guard_s: float = 0.0,
        safety_margin: int = 2,
        poll_reserve: int = 4,
        max_in_flight_s: float = 1800.0,
        poll_kinds: Iterable[str] = POLL_KINDS,
        clock: Clock | None = None,
        on_grant: Callable[[str, float], None] | None = None,
    ) -> None:
        if limit < 1 or window_s <= 0 or max_in_flight_s <= 0:
            raise ValueError("limit, window_s and max_in_flight_s must be positive")
        if guard_s < 0 or safety_margin < 0 or poll_reserve < 0:
            raise ValueError("guard_s, safety_margin and poll_reserve must not be negative")
        self._limit = limit
        self._window_s = window_s
        self._span_s = window_s + guard_s
        self._margin = safety_margin
        self._reserve = poll_reserve
        self._max_in_flight_s = max_in_flight_s
        self._poll_kinds = frozenset(poll_kinds)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._condition_waits = clock is None
        self._on_grant = on_grant
        self._cond = threading.Condition()
        self._ended: list[float] = []  # heap: answer times of requests still in the window
        self._in_flight: dict[Hashable, float] = {}  # request key -> grant time
        self._blocked_until = -math.inf
        self._last_now = -math.inf
        self._waiters: list[tuple[int, int]] = []
        self._tickets = itertools.count()
        self._granted: dict[str, int] = {}
        self._total_wait_s = 0.0
        self._waited = 0
        self._phantoms = 0
        self._server_blocks = 0
        self._closed = False

    # -- limits -------------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The server's limit in force (configured, or the last ``X-RateLimit-Limit``)."""
        with self._cond:
            return self._limit

    @property
    def span_s(self) -> float:
        """Length of the sliding window the pacer enforces (``window_s + guard_s``)."""
        return self._span_s

    def cap(self, kind: str) -> int:
        """Grants of ``kind`` are refused while the window holds this many (always >= 1)."""
        with self._cond:
            return self._cap(kind)

    def _cap(self, kind: str) -> int:
        total = max(1, self._limit - self._margin)
        if kind in self._poll_kinds:
            return max(1, total - self._reserve)
        return total

    def _priority(self, kind: str) -> int:
        return 1 if kind in self._poll_kinds else 0

    # -- core (callers hold the lock) ---------------------------------------------------------

    def _advance(self, now: float) -> float:
        """Time never runs backwards here: a stale ``now`` counts as the latest one seen."""
        now = max(now, self._last_now)
        self._last_now = now
        for key, granted in list(self._in_flight.items()):
            if granted + self._max_in_flight_s <= now:
                self._finish(key, granted + self._max_in_flight_s)
        while self._ended and self._ended[0] + self._span_s <= now:
            heapq.heappop(self._ended)
        return now

    def _count(self) -> int:
        return len(self._ended) + len(self._in_flight)

    def _wait_s(self, kind: str, now: float) -> float:
        wait = max(0.0, self._blocked_until - now)
        leave = self._count() - self._cap(kind) + 1  # places that must free up first
        if leave > 0:
            latest_ends = itertools.chain(
                self._ended, (g + self._max_in_flight_s for g in self._in_flight.values())
            )
            wait = max(wait, heapq.nsmallest(leave, latest_ends)[-1] + self._span_s - now)
        return wait

    def _grant(self, kind: str, now: float, key: Hashable | None) -> None:
        self._granted[kind] = self._granted.get(kind, 0) + 1
        if self._on_grant is not None:
            self._on_grant(kind, now)
        if key is None:
            heapq.heappush(self._ended, now)
            return
        self._finish(key, now)  # the key's previous request is over by now
        self._in_flight[key] = now

    def _finish(self, key: Hashable, now: float) -> None:
        if self._in_flight.pop(key, None) is not None:
            heapq.heappush(self._ended, now)

    def _queued_ahead(self, kind: str) -> bool:
        return bool(self._waiters) and self._waiters[0][0] <= self._priority(kind)

    # -- public API ---------------------------------------------------------------------------

    def try_acquire(self, kind: str, now: float, *, request_id: Hashable | None = None) -> float:
        """Grant a request of ``kind`` at ``now`` and return 0.0, or return seconds to wait.

        Non-blocking. Without ``request_id`` the request counts as answered at ``now``; with
        one it holds its place until ``observe(..., request_id=)`` (or the next grant with
        the same id). A blocking ``acquire`` caller of the same or a higher priority that is
        already waiting goes first. ``now`` is on the pacer's clock.
        """
        with self._cond:
            now = self._advance(now)
            wait = self._wait_s(kind, now)
            if self._queued_ahead(kind):
                return max(wait, _TURN_WAIT_S)
            if wait > 0:
                return wait
            self._grant(kind, now, request_id)
            return 0.0

    def acquire(self, kind: str) -> None:
        """Block until a request of ``kind`` may go, then record it as sent by this thread.

        The request holds its place in the window until this thread's next ``observe`` (or
        its next ``acquire``: a thread sends one request at a time).
        """
        with self._cond:
            ticket = (self._priority(kind), next(self._tickets))
            heapq.heappush(self._waiters, ticket)
            start = self._advance(self._clock.monotonic())
            self._finish(threading.get_ident(), start)  # this thread's last request is over
            try:
                self._wait_for_turn(ticket, kind, start)
            except BaseException:
                if ticket in self._waiters:
                    self._waiters.remove(ticket)
                    heapq.heapify(self._waiters)
                raise
            finally:
                self._cond.notify_all()

    def close(self) -> None:
        """The process is stopping: every waiting and later ``acquire`` raises
        :class:`~daemon.errors.Stopping` at once instead of waiting out the window."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _wait_for_turn(self, ticket: tuple[int, int], kind: str, start: float) -> None:
        while True:
            if self._closed:
                raise Stopping(f"not sent ({kind}): the process is stopping")
            now = self._advance(self._clock.monotonic())
            if self._waiters[0] != ticket:
                self._cond.wait(_RECHECK_S)
                continue
            wait = self._wait_s(kind, now)
            if wait <= 0:
                heapq.heappop(self._waiters)
                self._grant(kind, now, threading.get_ident())
                if now > start:
                    self._waited += 1
                    self._total_wait_s += now - start
                return
            self._block(wait)

    def _block(self, seconds: float) -> None:
        if self._condition_waits:
            self._cond.wait(seconds)
            return
        self._cond.release()
        try:
            self._clock.sleep(seconds)
        finally:
            self._cond.acquire()

    def observe(
        self,
        limit: int | None,
        remaining: int | None,
        retry_after_s: float | None,
        *,
        now: float | None = None,
        request_id: Hashable | None = None,
    ) -> None:
        """Take in an answer's ``X-RateLimit-Limit``/``-Remaining`` and ``Retry-After``.

        It also marks the request as answered: the one of ``request_id``, else the calling
        thread's last ``acquire``.
        """
        with self._cond:
            now = self._advance(self._clock.monotonic() if now is None else now)
            self._finish(threading.get_ident() if request_id is None else request_id, now)
            if limit is not None and limit > 0:
                self._limit = limit
            if retry_after_s is not None and retry_after_s > 0:
                self._block_until(now + retry_after_s)
            elif remaining is not None and remaining <= 0:
                self._block_until(now + self._window_s)
            if remaining is not None and remaining > 0:
                self._sync_remaining(remaining, now)
            self._cond.notify_all()

    def _block_until(self, until: float) -> None:
        self._server_blocks += 1
        self._blocked_until = max(self._blocked_until, until)

    def _sync_remaining(self, remaining: int, now: float) -> None:
        missing = (self._limit - remaining) - self._count()
        for _ in range(missing):
            heapq.heappush(self._ended, now)
        self._phantoms += max(0, missing)

    def headroom(self, kind: str, now: float) -> int:
        """Grants of ``kind`` possible at ``now`` without waiting (0 while blocked)."""
        with self._cond:
            now = self._advance(now)
            if now < self._blocked_until:
                return 0
            return max(0, self._cap(kind) - self._count())

    def budget_per_s(self, now: float, kind: str = "get") -> float:
        """The window's remaining capacity for ``kind``, spread over one window (calls/s).

        The engine may stretch poll delays when the polls it plans exceed this rate; the
        pacer queues them (FIFO) anyway, so this is a hint, never a correctness matter.
        """
        return self.headroom(kind, now) / self._span_s

    def stats(self) -> PacerStats:
        with self._cond:
            return PacerStats(
                granted=MappingProxyType(dict(self._granted)),
                total_wait_s=self._total_wait_s,
                waited=self._waited,
                in_flight=len(self._in_flight),
                queued=len(self._waiters),
                phantoms=self._phantoms,
                server_blocks=self._server_blocks,
            )


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """Seconds until the next ``get`` of one job: pure maths, all knobs documented here.

    Every answer is ``base * (1 ± jitter)`` (uniform, from the caller's rng) and never below
    ``min_interval_s``; ``base`` is clamped to ``[floor, max_interval_s]`` before jitter.
    """

    min_interval_s: float = 1.0
    """Absolute floor of every delay, after jitter."""
    jitter: float = 0.15
    """Relative jitter: the delay is scaled by a uniform factor in [1 - jitter, 1 + jitter]."""
    max_interval_s: float = 60.0
    """Cap of every base delay: a job is polled at least about once a minute."""
    waiting_base_s: float = 5.0
    """``waiting`` with nothing ahead (position 0)."""
    waiting_per_position_s: float = 5.0
    """Added per job ahead in the queue (position 3 -> 20 s, 11+ -> the 60 s cap)."""
    waiting_unknown_s: float = 15.0
    """``waiting`` without a queue position."""
    processing_unknown_s: float = 15.0
    """``processing`` while no duration is expected yet (nothing observed, no prior)."""
    processing_first_fraction: float = 0.8
    """First poll of a running job at this fraction of its expected duration."""
    processing_step_fraction: float = 0.2
    """Then every ``step * expected`` until the expected duration has passed."""
    processing_overdue_fraction: float = 0.1
    """Past the expected duration: every ``overdue * elapsed`` (fast at first, then backs
    off for a job that is very late)."""
    processing_floor_s: float = 2.0
    """Shortest base delay for running jobs (``processing``, ``distributing``, ``merging``)."""
    distributing_unknown_s: float = 10.0
    """``distributing`` before any chunk has finished."""
    merging_s: float = 4.0
    """``merging``: the chunks are done, the result follows shortly."""
    done_pending_s: float = 4.0
    """``done`` whose files have no urls yet."""
    other_s: float = 10.0
    """Any other status (unknown ones included)."""

    def next_poll_delay(
        self,
        *,
        status: str,
        queue_position: int | None,
        finished_chunks: int | None,
        all_chunks: int | None,
        elapsed_s: float,
        expected_s: float | None,
        rng: random.Random,
    ) -> float:
        """Seconds until the next ``get`` of a job whose last answer had ``status``.

        ``queue_position``: jobs ahead of it (``current_order``, else ``queue_count``);
        ``elapsed_s``: seconds since its create was answered; ``expected_s``: from
        :meth:`DurationEstimator.expected` for its ``sep_type``.
        """
        base = self._base_delay(
            status, queue_position, finished_chunks, all_chunks, elapsed_s, expected_s
        )
        factor = 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        return max(self.min_interval_s, base * factor)

    def _base_delay(
        self,
        status: str,
        queue_position: int | None,
        finished_chunks: int | None,
        all_chunks: int | None,
        elapsed_s: float,
        expected_s: float | None,
    ) -> float:
        if status == "waiting":
            return self._clamp(self._waiting(queue_position), self.waiting_base_s)
        if status == "processing":
            return self._clamp(self._processing(elapsed_s, expected_s), self.processing_floor_s)
        if status == "distributing":
            delay = self._distributing(finished_chunks, all_chunks, elapsed_s)
            return self._clamp(delay, self.processing_floor_s)
        if status == "merging":
            return self._clamp(self.merging_s, self.processing_floor_s)
        if status == "done":
            return self._clamp(self.done_pending_s, self.min_interval_s)
        return self._clamp(self.other_s, self.min_interval_s)

    def _clamp(self, delay: float, floor: float) -> float:
        return min(self.max_interval_s, max(floor, self.min_interval_s, delay))

    def _waiting(self, position: int | None) -> float:
        if position is None:
            return self.waiting_unknown_s
        return self.waiting_base_s + self.waiting_per_position_s * max(0, position)

    def _processing(self, elapsed_s: float, expected_s: float | None) -> float:
        if expected_s is None or expected_s <= 0:
            return self.processing_unknown_s
        first = self.processing_first_fraction * expected_s
        if elapsed_s < first:
            return first - elapsed_s
        if elapsed_s <= expected_s:
            return self.processing_step_fraction * expected_s
        return self.processing_overdue_fraction * elapsed_s

    def _distributing(self, finished: int | None, total: int | None, elapsed_s: float) -> float:
        if not finished or not total or finished <= 0 or elapsed_s <= 0:
            return self.distributing_unknown_s
        per_chunk_s = elapsed_s / finished
        return per_chunk_s * max(0, total - finished)


class DurationEstimator:
    """EWMA of observed create->done durations, per ``sep_type`` with a global fallback.

    ``expected(sep_type)``: that type's EWMA once it has one observation, else the global
    EWMA over all types, else ``prior_s`` (``None`` by default: the policy then polls at its
    ``processing_unknown_s`` cadence). ``alpha`` [0.3] weighs the newest observation; the
    first observation of a key seeds its average. Thread-safe; no I/O.
    """

    def __init__(self, *, alpha: float = 0.3, prior_s: float | None = None) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._prior_s = prior_s
        self._by_type: dict[int, float] = {}
        self._global: float | None = None
        self._lock = threading.Lock()

    def observe(self, sep_type: int, seconds: float) -> None:
        """Record one job's duration; non-finite or non-positive values are ignored."""
        if not math.isfinite(seconds) or seconds <= 0:
            return
        with self._lock:
            self._by_type[sep_type] = self._ewma(self._by_type.get(sep_type), seconds)
            self._global = self._ewma(self._global, seconds)

    def expected(self, sep_type: int) -> float | None:
        with self._lock:
            found = self._by_type.get(sep_type)
            if found is not None:
                return found
            return self._global if self._global is not None else self._prior_s

    def _ewma(self, current: float | None, value: float) -> float:
        if current is None:
            return value
        return current + self._alpha * (value - current)


__all__ = [
    "POLL_KINDS",
    "Clock",
    "DurationEstimator",
    "Pacer",
    "PacerStats",
    "PollPolicy",
    "SystemClock",
]
