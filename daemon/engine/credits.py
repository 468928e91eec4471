"""What each job cost: the history's ``credits``, read for many filed jobs at once.

Filing never waits for it. A filed job sent to MVSEP whose credits are unknown is *wanted*
(:func:`want`); the scheduler's timer (:func:`tick`) reads the account's
``separation_history`` once the oldest wanted job has waited ``credits_read_every_s`` and
at most once every ``credits_read_every_s``, on the worker pool. One read is page 0
(20 entries, newest first); a further page only while the page just read was full and held
a wanted job or one still at MVSEP (the wanted ones may be below it), at most
:data:`MAX_PAGES`. Every wanted job a read shows is settled (``mark_credits``). A job
looked for in :data:`MAX_LOOKS` reads without being found, or wanted for
:data:`GIVE_UP_S`, is left unknown (``status`` says so) with one log line. A history that
cannot be read warns once until a read works again.

A restart loses nothing: the first pass asks the journal for the filed jobs without
credits changed in the last :data:`GIVE_UP_S` (:meth:`Journal.filed_without_credits`).
:func:`settle_now` is the final read of a one-shot run (``Engine.run_until_idle``), so
``separate`` ends with each job's credits known when the history has them.

:class:`CreditBook` is the decision part (which jobs are wanted, when the next read is
due, which are given up, given ``now``) and :func:`more_pages` the paging rule: no I/O.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from daemon.errors import RetryLater, Stopping, WillNeverWork
from daemon.jobs import Job, JobState
from daemon.mvsep.client import HISTORY_MAX_LIMIT
from daemon.mvsep.models import HistoryEntry

if TYPE_CHECKING:
    from daemon.engine.context import Context

log = structlog.get_logger(__name__)

MAX_PAGES = 3
"""History pages (of 20) one read may go through."""
MAX_LOOKS = 5
"""Reads a wanted job may be looked for in (found or not, read or failed) before it is
left unknown."""
GIVE_UP_S = 3600.0
"""A job wanted this long (since it was filed) is left unknown; the restart look-back."""


@dataclass
class Wanted:
    job: Job
    since: float  # wall time it became wanted (filed)
    looks: int = 0


class CreditBook:
    """The wanted jobs and the read timer (thread-safe; no I/O: every method takes ``now``,
    wall-clock seconds, and the read interval ``every_s``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._wanted: dict[int, Wanted] = {}
        self._last_read_at: float | None = None
        self._reading = False
        self._loaded = False
        self.failing = False
        """The last read failed (its warning is given; the next one only after a read works)."""

    def want(self, job: Job, since: float) -> None:
        """``job`` (filed, sent to MVSEP) wants its credits from the next read."""
        if job.mvsep_hash is None or job.used_credits is not None:
            return
        with self._cond:
            self._wanted.setdefault(job.id, Wanted(job, since))

    def first_look(self) -> bool:
        """True once: the journal's filed jobs without credits are to be loaded now."""
        with self._cond:
            first, self._loaded = not self._loaded, True
            return first

    def wanted_ids(self) -> set[int]:
        with self._cond:
            return set(self._wanted)

    def due_in(self, now: float, *, every_s: float) -> float:
        """Seconds until the next read is due (0: now); ``inf`` while nothing is wanted or
        a read is running. Due once the oldest wanted job has waited ``every_s`` (the jobs
        filed meanwhile share the read), and ``every_s`` after the last read."""
        with self._cond:
            if self._reading or not self._wanted:
                return math.inf
            return max(0.0, self._due_at(every_s) - now)

    def take(self, now: float, *, every_s: float, force: bool = False) -> list[Job] | None:
        """Start a read if one is due (or ``force``) and none runs: the jobs it looks for."""
        with self._cond:
            if self._reading or not self._wanted:
                return None
            if not force and self._due_at(every_s) > now:
                return None
            self._reading = True
            self._last_read_at = now
            return [w.job for w in self._wanted.values()]

    def _due_at(self, every_s: float) -> float:
        due = min(w.since for w in self._wanted.values()) + every_s
        if self._last_read_at is not None:
            due = max(due, self._last_read_at + every_s)
        return due

    def finish(self, looked: Iterable[int], found: Mapping[int, float], now: float) -> list[Wanted]:
        """A read ended: the ``found`` jobs are settled; each other job ``looked`` for has
        one look more. Returns the jobs given up now (:data:`MAX_LOOKS`, :data:`GIVE_UP_S`)."""
        given_up: list[Wanted] = []
        with self._cond:
            for job_id in looked:
                wanted = self._wanted.get(job_id)
                if wanted is None:
                    continue
                wanted.looks += 1
                if job_id in found:
                    del self._wanted[job_id]
                elif wanted.looks >= MAX_LOOKS or now - wanted.since >= GIVE_UP_S:
                    del self._wanted[job_id]
                    given_up.append(wanted)
            self._reading = False
            self._cond.notify_all()
        return given_up

    def release(self) -> None:
        """A read that did not happen (the engine stops): nothing is counted."""
        with self._cond:
            self._reading = False
            self._cond.notify_all()

    def wait_read(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for a running read to end."""
        with self._cond:
            self._cond.wait_for(lambda: not self._reading, timeout=timeout_s)


def more_pages(
    page: int,
    entries: Sequence[HistoryEntry],
    *,
    wanted: set[str],
    held: set[str],
    at_mvsep: set[str],
) -> bool:
    """PURE: whether the page after ``page`` (0-based) is worth a call: some hash is still
    ``wanted``, this page was full, the bound allows, and this page ``held`` a wanted job or
    showed one still ``at_mvsep`` (newer jobs above the wanted ones push them down)."""
    if not wanted or len(entries) < HISTORY_MAX_LIMIT or page + 1 >= MAX_PAGES:
        return False
    return bool(held) or any(entry.hash in at_mvsep for entry in entries)


def want(ctx: Context, job: Job) -> None:
    """A job was filed: its credits come from a later history read (filing never waits)."""
    ctx.credits.want(job, ctx.clock.time())


def tick(ctx: Context, pool: Executor | None, wake: Callable[[], None]) -> float:
    """The scheduler's timer: start the read on ``pool`` when due; the seconds until the
    next one is due (``inf``: nothing wanted)."""
    book = ctx.credits
    now = ctx.clock.time()
    _load_once(ctx, now)
    every_s = ctx.settings.credits_read_every_s
    if pool is None or ctx.stopping.is_set():
        return book.due_in(now, every_s=every_s)
    jobs = book.take(now, every_s=every_s)
    if jobs is None:
        return book.due_in(now, every_s=every_s)
    try:
        pool.submit(_read_then_wake, ctx, jobs, wake)
    except RuntimeError:  # the pool shut down meanwhile
        book.release()
    return math.inf


def settle_now(ctx: Context, timeout_s: float = 30.0) -> None:
    """One read now for every wanted job (the end of a one-shot run), after any running."""
    book = ctx.credits
    _load_once(ctx, ctx.clock.time())
    book.wait_read(timeout_s)
    jobs = book.take(ctx.clock.time(), every_s=ctx.settings.credits_read_every_s, force=True)
    if jobs is not None:
        _read(ctx, jobs)


def _load_once(ctx: Context, now: float) -> None:
    if not ctx.credits.first_look():
        return
    for job in ctx.journal.filed_without_credits(since=now - GIVE_UP_S):
        ctx.credits.want(job, job.updated_at)


def _read_then_wake(ctx: Context, jobs: list[Job], wake: Callable[[], None]) -> None:
    try:
        _read(ctx, jobs)
    finally:
        wake()  # the next read's due time is counted from this one


def _read(ctx: Context, jobs: list[Job]) -> None:
    """Read the history for ``jobs`` (one pass per MVSEP host), settle what it shows."""
    book = ctx.credits
    found: dict[int, float] = {}
    try:
        for host_jobs in _by_host(jobs).values():
            _read_host(ctx, host_jobs, found)
    except Stopping:
        book.release()
        return
    except (RetryLater, WillNeverWork) as exc:
        _read_failed(ctx, jobs, exc)
    except Exception:  # a bug: counted as a failed read (bounded), the timer goes on
        log.exception("credits read failed unexpectedly", jobs=len(jobs))
    else:
        book.failing = False
    now = ctx.clock.time()
    for gone in book.finish([j.id for j in jobs], found, now):
        log.info("credits unknown: not found in the history", job_id=gone.job.id,
                 file=str(gone.job.source.path), looks=gone.looks,
                 waited_s=round(now - gone.since, 1))  # fmt: skip


def _read_failed(ctx: Context, jobs: list[Job], exc: BaseException) -> None:
    if ctx.credits.failing:
        log.info("history still unreadable", jobs=len(jobs), error=str(exc))
        return
    ctx.credits.failing = True
    log.warning("credits unknown: the history could not be read", error=str(exc),
                job_id=[j.id for j in jobs], file=[str(j.source.path) for j in jobs])  # fmt: skip


def _by_host(jobs: Iterable[Job]) -> dict[str | None, list[Job]]:
    hosts: dict[str | None, list[Job]] = {}
    for job in jobs:
        hosts.setdefault(job.base_url, []).append(job)
    return hosts


def _read_host(ctx: Context, jobs: list[Job], found: dict[int, float]) -> None:
    """Read the pages one host's wanted jobs need; journal their credits, add them to
    ``found`` (by job id) as they come: a page that fails keeps what the others gave."""
    client = ctx.client_for(jobs[0])
    wanted = {job.mvsep_hash: job.id for job in jobs if job.mvsep_hash is not None}
    at_mvsep: set[str] | None = None
    for page in range(MAX_PAGES):
        entries = client.separation_history(start=page * HISTORY_MAX_LIMIT, limit=HISTORY_MAX_LIMIT)
        held = {e.hash for e in entries if e.hash in wanted}
        for entry in entries:
            job_id = wanted.pop(entry.hash, None)
            if job_id is not None and entry.credits is not None:
                found[job_id] = entry.credits
                _journal(ctx, job_id, entry.credits)
        if at_mvsep is None and wanted and len(entries) >= HISTORY_MAX_LIMIT:
            at_mvsep = _at_mvsep(ctx)
        if not more_pages(page, entries, wanted=set(wanted), held=held, at_mvsep=at_mvsep or set()):
            break


def _at_mvsep(ctx: Context) -> set[str]:
    """Hashes of this journal's jobs not yet filed: newer than most wanted ones."""
    states = (JobState.QUEUED, JobState.DOWNLOADING)
    return {j.mvsep_hash for j in ctx.journal.jobs_in(states) if j.mvsep_hash is not None}


def _journal(ctx: Context, job_id: int, credits: float) -> None:
    try:
        ctx.journal.mark_credits(job_id, credits)
    except KeyError:  # forgotten meanwhile (``jobs forget``)
        pass


__all__ = ["CreditBook", "Wanted", "more_pages", "settle_now", "tick", "want"]
