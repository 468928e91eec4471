"""The one shared API pacer: a window per rate-limit route, fed by the ``X-RateLimit-*`` headers.

Routes and limits
-----------------
MVSEP limits each route on its own: ``X-RateLimit-Limit`` is 60 on ``separation/get`` and
``app/algorithms`` and 120 on ``separation_history`` and the account routes, each with its own
``X-RateLimit-Remaining`` (a Laravel fixed 60-s window; HTTP 429 beyond). The public Postman
captures agree: ``news`` answered ``Remaining: 119`` 28 s after ``separation_history`` had
answered 117. So the pacer keeps one window per *route* (by default the request kind is its
route: ``create``, ``get``, ``history``...; ``routes=`` can make kinds share one window). A
route obeys the lowest ``X-RateLimit-Limit`` seen on it; a route not heard from yet starts at
``limit`` (60: the lowest any route has shown).

Budget arithmetic (the benchmark: premium account, 10 slots, jobs of 30 ± 10 s)
-------------------------------------------------------------------------------
The ``get`` route allows 60 calls a minute, of which the pacer uses ``limit - safety_margin``
= 58. Ten slots with jobs of ~30 s (+1 s upload) finish ~20 jobs a minute; polling every job
every 5 s would need 120 ``get`` calls a minute: impossible. So polls are spent where they
shorten the time a *finished* job still holds its slot (see :mod:`daemon.polling`): none
while the job certainly runs, the first at 0.8 E (E = expected duration), then every 0.2 E,
then every 0.1 x elapsed once overdue; ~2.1 polls per job, a done seen ~5 s after MVSEP
finished it. ``bench/bench_pacing.py`` simulates it.

Pacer
-----
:class:`Pacer` implements the client's ``RequestGate``. Rules, in order, per route:

* **Window**: every request holds a place in its route from its grant until ``window_s +
  guard_s`` after its answer (``observe``) - until then, while it is in flight. A request of
  kind ``k`` is granted only while fewer than ``cap(k)`` places of its route are held. Why
  this is exact: the server counts a request at some time between our grant and its answer.
  Take any server window ``[S, S + window_s)`` and, of the requests it counted, the one
  granted last, at ``g``: every other one was answered at or after ``S > g - window_s``, so
  it still held its place at ``g``; hence the window counted at most ``cap`` requests -
  whatever the latency, and at any window phase (fixed or sliding). ``guard_s`` (default 0)
  only adds slack. Instantaneous requests (``try_acquire`` without ``request_id``) reduce to
  a sliding window over grant times.
* **Reserve**: where a route is shared by polls (``get``, ``get_remote``) and other kinds,
  polls are granted only while fewer than ``limit - safety_margin - poll_reserve`` places
  are held, so that a freed slot's create does not queue behind polls.
* **Server says stop**: ``Retry-After`` blocks the route that answered until it has passed;
  ``Remaining: 0`` without ``Retry-After`` blocks it for ``window_s``. A ``Remaining`` lower
  than our own count (another client on the same token or IP) adds "phantom" places held
  from ``now``. An answer whose route is unknown blocks every route (never learns a limit).
* **Order**: blocking callers of :meth:`Pacer.acquire` are served per route by (priority,
  arrival): non-poll kinds first, FIFO within a priority. Routes do not wait for each other.

In flight: ``acquire`` ties the request to the calling thread; that thread's next
``observe`` (the client calls it after every answer) or next ``acquire`` ends it;
``max_in_flight_s`` ends a forgotten one.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from daemon.errors import Stopping
from daemon.polling import DurationEstimator, PollPolicy

POLL_KINDS: frozenset[str] = frozenset({"get", "get_remote"})
"""Request kinds that are polls: lower priority, and kept out of a shared route's reserve."""

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
    limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Per route heard from: the lowest ``X-RateLimit-Limit`` it has sent."""


@dataclass
class _Route:
    """One server-side rate-limit window: its limit and the places our requests hold in it."""

    seen_limit: int | None = None
    ended: list[float] = field(default_factory=list)  # heap: answer times still in the window
    in_flight: dict[Hashable, float] = field(default_factory=dict)  # key -> grant time
    blocked_until: float = -math.inf
    waiters: list[tuple[int, int]] = field(default_factory=list)  # heap of (priority, arrival)
    has_polls: bool = False
    has_others: bool = False

    def count(self) -> int:
        return len(self.ended) + len(self.in_flight)


class Pacer:
    """Thread-safe shared pacer of all MVSEP API calls (a ``RequestGate``).

    Keyword arguments (defaults in brackets):

    * ``limit`` [60]: requests per window of a route until its ``X-RateLimit-Limit`` is seen.
    * ``window_s`` [60.0]: the server's window.
    * ``guard_s`` [0.0]: added to the window (the proof in the module docstring needs none).
    * ``safety_margin`` [2]: places of each window never used (other clients on the token).
    * ``poll_reserve`` [4]: places polls may not use in a route they share with other kinds.
    * ``max_in_flight_s`` [1800.0]: a request never answered (its thread gone) stops holding
      its place this long after its grant (above the client's 1200-s upload timeout).
    * ``poll_kinds`` [``get``, ``get_remote``]: the kinds that are polls.
    * ``routes`` [{}]: kind -> route for kinds the server counts in one window; a kind not
      listed is its own route.
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
        routes: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        on_grant: Callable[[str, float], None] | None = None,
    ) -> None:
        if limit < 1 or window_s <= 0 or max_in_flight_s <= 0:
            raise ValueError("limit, window_s and max_in_flight_s must be positive")
        if guard_s < 0 or safety_margin < 0 or poll_reserve < 0:
            raise ValueError("guard_s, safety_margin and poll_reserve must not be negative")
        self._default_limit = limit
        self._window_s = window_s
        self._span_s = window_s + guard_s
        self._margin = safety_margin
        self._reserve = poll_reserve
        self._max_in_flight_s = max_in_flight_s
        self._poll_kinds = frozenset(poll_kinds)
        self._route_names = dict(routes or {})
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._condition_waits = clock is None
        self._on_grant = on_grant
        self._cond = threading.Condition()
        self._routes: dict[str, _Route] = {}
        self._route_of_key: dict[Hashable, str] = {}  # in-flight request key -> its route
        for kind, route in self._route_names.items():
            self._note_kind(self._route(route), kind)
        self._all_blocked_until = -math.inf  # a stop no route could be named for
        self._last_now = -math.inf
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
        """The limit a route starts with until it sends ``X-RateLimit-Limit``."""
        return self._default_limit

    @property
    def span_s(self) -> float:
        """Length of the sliding window the pacer enforces (``window_s + guard_s``)."""
        return self._span_s

    def route_of(self, kind: str) -> str:
        """The rate-limit route a request of ``kind`` counts against."""
        return self._route_names.get(kind, kind)

    def limit_for(self, kind: str) -> int:
        """The limit in force for ``kind``'s route: the lowest it has sent, else ``limit``."""
        with self._cond:
            return self._limit_of(self._route(self.route_of(kind)))

    def cap(self, kind: str) -> int:
        """Grants of ``kind`` are refused while its route holds this many (always >= 1)."""
        with self._cond:
            return self._cap(kind)

    def _limit_of(self, route: _Route) -> int:
        return self._default_limit if route.seen_limit is None else route.seen_limit

    def _cap(self, kind: str) -> int:
        route = self._route_of_kind(kind)
        total = max(1, self._limit_of(route) - self._margin)
        if kind in self._poll_kinds and route.has_others:
            return max(1, total - self._reserve)
        return total

    def _priority(self, kind: str) -> int:
        return 1 if kind in self._poll_kinds else 0

    # -- core (callers hold the lock) ---------------------------------------------------------

    def _route(self, name: str) -> _Route:
        route = self._routes.get(name)
        if route is None:
            route = self._routes[name] = _Route()
        return route

    def _route_of_kind(self, kind: str) -> _Route:
        route = self._route(self.route_of(kind))
        self._note_kind(route, kind)
        return route

    def _note_kind(self, route: _Route, kind: str) -> None:
        if kind in self._poll_kinds:
            route.has_polls = True
        else:
            route.has_others = True

    def _advance(self, now: float) -> float:
        """Time never runs backwards here: a stale ``now`` counts as the latest one seen."""
        now = max(now, self._last_now)
        self._last_now = now
        for route in self._routes.values():
            for key, granted in list(route.in_flight.items()):
                if granted + self._max_in_flight_s <= now:
                    self._finish(key, granted + self._max_in_flight_s)
            while route.ended and route.ended[0] + self._span_s <= now:
                heapq.heappop(route.ended)
        return now

    def _wait_s(self, kind: str, now: float) -> float:
        route = self._route_of_kind(kind)
        wait = max(0.0, self._blocked_until(route) - now)
        leave = route.count() - self._cap(kind) + 1  # places that must free up first
        if leave > 0:
            latest_ends = itertools.chain(
                route.ended, (g + self._max_in_flight_s for g in route.in_flight.values())
            )
            wait = max(wait, heapq.nsmallest(leave, latest_ends)[-1] + self._span_s - now)
        return wait

    def _grant(self, kind: str, now: float, key: Hashable | None) -> None:
        self._granted[kind] = self._granted.get(kind, 0) + 1
        if self._on_grant is not None:
            self._on_grant(kind, now)
        name = self.route_of(kind)
        route = self._route(name)
        if key is None:
            heapq.heappush(route.ended, now)
            return
        self._finish(key, now)  # the key's previous request is over by now
        route.in_flight[key] = now
        self._route_of_key[key] = name

    def _finish(self, key: Hashable, now: float) -> str | None:
        """End request ``key`` at ``now``; the name of its route (``None`` if none was open)."""
        name = self._route_of_key.pop(key, None)
        if name is not None and self._routes[name].in_flight.pop(key, None) is not None:
            heapq.heappush(self._routes[name].ended, now)
        return name

    def _blocked_until(self, route: _Route) -> float:
        return max(route.blocked_until, self._all_blocked_until)

    def _queued_ahead(self, kind: str) -> bool:
        waiters = self._route_of_kind(kind).waiters
        return bool(waiters) and waiters[0][0] <= self._priority(kind)

    # -- public API ---------------------------------------------------------------------------

    def try_acquire(self, kind: str, now: float, *, request_id: Hashable | None = None) -> float:
        """Grant a request of ``kind`` at ``now`` and return 0.0, or return seconds to wait.

        Non-blocking. Without ``request_id`` the request counts as answered at ``now``; with
        one it holds its place until ``observe(..., request_id=)`` (or the next grant with
        the same id). A blocking ``acquire`` caller on the same route, of the same or a
        higher priority, that is already waiting goes first. ``now`` is on the pacer's clock.
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

        The request holds its place in its route's window until this thread's next
        ``observe`` (or its next ``acquire``: a thread sends one request at a time).
        """
        with self._cond:
            waiters = self._route_of_kind(kind).waiters
            ticket = (self._priority(kind), next(self._tickets))
            heapq.heappush(waiters, ticket)
            start = self._advance(self._clock.monotonic())
            self._finish(threading.get_ident(), start)  # this thread's last request is over
            try:
                self._wait_for_turn(waiters, ticket, kind, start)
            except BaseException:
                if ticket in waiters:
                    waiters.remove(ticket)
                    heapq.heapify(waiters)
                raise
            finally:
                self._cond.notify_all()

    def close(self) -> None:
        """The process is stopping: every waiting and later ``acquire`` raises
        :class:`~daemon.errors.Stopping` at once instead of waiting out the window."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _wait_for_turn(
        self, waiters: list[tuple[int, int]], ticket: tuple[int, int], kind: str, start: float
    ) -> None:
        while True:
            if self._closed:
                raise Stopping(f"not sent ({kind}): the process is stopping")
            now = self._advance(self._clock.monotonic())
            if waiters[0] != ticket:
                self._cond.wait(_RECHECK_S)
                continue
            wait = self._wait_s(kind, now)
            if wait <= 0:
                heapq.heappop(waiters)
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
        route: str | None = None,
        now: float | None = None,
        request_id: Hashable | None = None,
    ) -> None:
        """Take in an answer's ``X-RateLimit-Limit``/``-Remaining`` and ``Retry-After``.

        ``route`` is the kind of request that answered (the client passes its endpoint);
        without it, the route of the request this answer ends. The answer also marks that
        request as answered: the one of ``request_id``, else the calling thread's last
        ``acquire``.
        """
        with self._cond:
            now = self._advance(self._clock.monotonic() if now is None else now)
            key = threading.get_ident() if request_id is None else request_id
            ended_route = self._finish(key, now)
            name = ended_route if route is None else self.route_of(route)
            if name is None:
                self._observe_unknown_route(retry_after_s, remaining, now)
            else:
                self._observe_route(self._route(name), limit, remaining, retry_after_s, now)
            self._cond.notify_all()

    def _observe_route(
        self,
        route: _Route,
        limit: int | None,
        remaining: int | None,
        retry_after_s: float | None,
        now: float,
    ) -> None:
        if limit is not None and limit > 0:
            seen = route.seen_limit
            route.seen_limit = limit if seen is None else min(seen, limit)
        if retry_after_s is not None and retry_after_s > 0:
            self._block_until(route, now + retry_after_s)
        elif remaining is not None and remaining <= 0:
            self._block_until(route, now + self._window_s)
        if remaining is not None and remaining > 0:
            counted_by = limit if limit is not None and limit > 0 else self._limit_of(route)
            self._sync_remaining(route, counted_by - remaining, now)

    def _observe_unknown_route(
        self, retry_after_s: float | None, remaining: int | None, now: float
    ) -> None:
        """An answer nothing can be attributed to: a stop holds every route."""
        if retry_after_s is not None and retry_after_s > 0:
            until = now + retry_after_s
        elif remaining is not None and remaining <= 0:
            until = now + self._window_s
        else:
            return
        self._server_blocks += 1
        self._all_blocked_until = max(self._all_blocked_until, until)

    def _block_until(self, route: _Route, until: float) -> None:
        self._server_blocks += 1
        route.blocked_until = max(route.blocked_until, until)

    def _sync_remaining(self, route: _Route, server_count: int, now: float) -> None:
        missing = server_count - route.count()
        for _ in range(missing):
            heapq.heappush(route.ended, now)
        self._phantoms += max(0, missing)

    def headroom(self, kind: str, now: float) -> int:
        """Grants of ``kind`` possible at ``now`` without waiting (0 while blocked)."""
        with self._cond:
            now = self._advance(now)
            route = self._route_of_kind(kind)
            if now < self._blocked_until(route):
                return 0
            return max(0, self._cap(kind) - route.count())

    def budget_per_s(self, now: float, kind: str = "get") -> float:
        """The remaining capacity of ``kind``'s route, spread over one window (calls/s).

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
                in_flight=sum(len(r.in_flight) for r in self._routes.values()),
                queued=sum(len(r.waiters) for r in self._routes.values()),
                phantoms=self._phantoms,
                server_blocks=self._server_blocks,
                limits=MappingProxyType(
                    {n: r.seen_limit for n, r in self._routes.items() if r.seen_limit is not None}
                ),
            )


__all__ = [
    "POLL_KINDS",
    "Clock",
    "DurationEstimator",
    "Pacer",
    "PacerStats",
    "PollPolicy",
    "SystemClock",
]
