"""The queue watch: one read tells whether any job at MVSEP is done.

``/api/app/user`` answers ``current_queue``, the account's unfinished separations. It is
on the account route, a rate window of its own (120 a minute, beside the 60 of ``get``),
so while jobs wait here for a slot (the moment a done job goes unseen, a slot idles) the
watch reads it every ``interval_s``, or as often as the route's limit allows evenly
(:meth:`QueueWatch.gap_s`; with at least ``MIN_JOBS`` held: for one job a
``get`` answers the same question). When the count is below the jobs we hold at MVSEP
(not seen done yet), that many of them are done: the poll planner spends its next ``get``
calls on the likeliest of them (``Budget.done_hint``); while a fresh reading shows none
of them done, their ``get`` calls are saved (``Budget.known_running``: each is still polled
every ``PollPlanner.watch_fallback_s``, should the count not be what it seems).

The count is only ever a lower bound of the jobs done (:func:`done_hint`): jobs another
client runs on the token, or a create answered after the read was sent, raise the count
and hide a done, never invent one; a job seen done (or gone) since the read, or with a
``get`` in flight, is taken off. A read that fails is skipped (the polls go on as before).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from daemon.engine.context import log
from daemon.errors import ApiError, Stopping

MIN_JOBS = 2
"""The watch runs only while at least this many jobs are held at MVSEP: a read that
covers one job only is a ``get`` on another route's budget."""

MIN_SPREAD_S = 2.0
"""... and only while the held jobs' ends are uncertain by this much (the estimate's
spread, on average): a job whose end is known to a second or two is found by about one
``get`` anyway, and a read beside it is a call spent for nothing (300 jobs of 2 s: 310
reads, 1.03 calls a job, saved no ``get``)."""


def worth_watching(backlog: int, spreads: list[float | None]) -> bool:
    """PURE: whether a read pays, given the jobs waiting for a slot and the estimate's
    spread of each job held at MVSEP (``None``: no estimate): a backlog, ``MIN_JOBS`` held
    and ends uncertain by ``MIN_SPREAD_S`` on average (unknown ends count as uncertain)."""
    if backlog <= 0 or len(spreads) < MIN_JOBS:
        return False
    known = [s for s in spreads if s is not None]
    return not known or sum(known) / len(known) >= MIN_SPREAD_S


@dataclass(frozen=True)
class Reading:
    """``unfinished`` (``current_queue``) as answered to a read sent at ``sent_at``
    (monotonic) while ``jobs`` (job ids) were at MVSEP and not seen done."""

    jobs: frozenset[int]
    unfinished: int
    sent_at: float = 0.0


def done_hint(
    reading: Reading | None, live: frozenset[int], polling: frozenset[int]
) -> tuple[int, frozenset[int]]:
    """PURE: (how many of ``reading.jobs`` are surely done and unseen, the jobs they are
    among). ``live``: jobs still at MVSEP and not seen done now; ``polling``: those with a
    ``get`` in flight (it may be finding the done one)."""
    if reading is None:
        return 0, frozenset()
    candidates = (reading.jobs & live) - polling
    gone = len(reading.jobs - live)
    busy = len(reading.jobs & live & polling)
    count = len(reading.jobs) - reading.unfinished - gone - busy
    return max(0, min(count, len(candidates))), frozenset(candidates)


def known_running(
    reading: Reading | None,
    live: frozenset[int],
    polling: frozenset[int],
    now: float,
    fresh_s: float,
) -> frozenset[int]:
    """PURE: the jobs a reading sent less than ``fresh_s`` ago shows all still running
    (the count is exactly its jobs: none done, none not ours): a ``get`` of one of them now
    would almost surely be wasted. A count above its jobs (another client's job on the
    token, a create answered after the read was sent) could hide a done: it shows nothing."""
    if reading is None or now - reading.sent_at > fresh_s:
        return frozenset()
    count, among = done_hint(reading, live, polling)
    if count > 0 or reading.unfinished != len(reading.jobs):
        return frozenset()  # some done, or jobs not ours in the count (one may hide a done)
    return among


class QueueWatch:
    """The watch's thread: started by :meth:`want` (the poll step calls it each plan),
    ended when there is nothing to watch (``held()`` answers None) or the engine stops."""

    def __init__(
        self,
        *,
        read: Callable[[], int | None],
        held: Callable[[], frozenset[int] | None],
        on_reading: Callable[[Reading], None],
        stopping: threading.Event,
        interval_s: float,
        clock: Callable[[], float],
        least_gap_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._clock = clock
        self._read = read
        self._held = held
        self._on_reading = on_reading
        self._stopping = stopping
        self._interval_s = interval_s
        self._least_gap_s = least_gap_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped_by_error = False

    def gap_s(self) -> float:
        """Seconds between two reads: ``interval_s``, or more where the account route's
        limit allows fewer (``least_gap_s``: reads spread evenly over its window, never a
        burst that then waits a quarter of a minute at the pacer with no reading at all)."""
        return max(self._interval_s, self._least_gap_s())

    def want(self) -> None:
        """Make sure the thread runs (cheap when it does)."""
        if self._interval_s <= 0 or self._stopping.is_set() or self._stopped_by_error:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="mvsep-queue-watch")
            self._thread.daemon = True
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                jobs = self._held()
                if not jobs:
                    return
                self._read_once(jobs)
                if self._stopped_by_error:
                    return
                self._stopping.wait(self.gap_s())
        finally:
            with self._lock:
                self._thread = None

    def _read_once(self, jobs: frozenset[int]) -> None:
        sent_at = self._clock()
        try:
            unfinished = self._read()
        except Stopping:
            return
        except ApiError as exc:  # skipped: the polls go on without the hint
            log.debug("queue watch read failed", error=str(exc))
            return
        except Exception as exc:  # a closed client (the engine stopping), a bug: no watch
            log.debug("queue watch stopped", error=repr(exc))
            self._stopped_by_error = True
            return
        if unfinished is not None:
            self._on_reading(Reading(jobs, unfinished, sent_at))
