"""The ``queued`` state's work: fetch the status, and choose when to fetch it next.

:func:`poll` is one ``get`` (on the host the job lives on, ``Context.client_for``) and what
follows from it (``downloading``, ``failed``, expired, a cancel at MVSEP). :class:`Polls`
holds each queued job's timer and computes the next delay from the pure poll policy
(``daemon.pacing.PollPolicy``) or, after an error, from ``daemon.engine.retry``. A healthy
job's timer is in memory (a restart polls every job at once, then adapts); a failing poll's
streak is journaled (``attempts``, ``first_error_at``, ``next_attempt_at``: the job stays
``queued``), so that its backoff and its deadline continue across a restart.

A ``not_found`` answer is not taken as "expired" on its word: MVSEP answers one now and then
for a job it has. It is a failed poll (retried with the same backoff) until the streak is
old and consistent (``retry.ExpiryPolicy``, counted on the job's timer: a restart starts
counting again) AND the account's ``separation_history`` agrees (:func:`history_says_gone`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from daemon.engine import retry
from daemon.engine.context import Context, ids, log
from daemon.engine.dispose import fail
from daemon.errors import ApiError, ApiNotFound, ApiRejected, RetryLater, WillNeverWork
from daemon.jobs import Job, JobState, ResultFile
from daemon.mvsep.client import HISTORY_MAX_LIMIT
from daemon.mvsep.models import HistoryEntry, JobStatus
from daemon.pacing import DurationEstimator, PollPolicy


@dataclass
class PollTimer:
    started_at: float  # monotonic: when this engine first saw the job queued
    next_at: float  # monotonic
    not_found: int = 0  # not_found answers since the last status (see ExpiryPolicy)
    first_not_found_at: float | None = None  # wall clock


class Polls:
    """The poll timers of queued jobs and the step that runs one poll. Thread-safe."""

    def __init__(self, ctx: Context, *, policy: PollPolicy, estimator: DurationEstimator) -> None:
        self._ctx = ctx
        self._policy = policy
        self._estimator = estimator
        self._lock = threading.Lock()
        self._timers: dict[int, PollTimer] = {}

    def due_in(self, job: Job, now: float) -> float:
        """Seconds until ``job`` is due for a poll (0 or less: now); starts its timer."""
        with self._lock:
            timer = self._timers.get(job.id)
            if timer is None:
                timer = PollTimer(started_at=now, next_at=now + self._journaled_wait_s(job))
                self._timers[job.id] = timer
            return timer.next_at - now

    def _journaled_wait_s(self, job: Job) -> float:
        """What is left of the backoff of a poll streak journaled before a restart."""
        if job.attempts == 0 or job.next_attempt_at is None:
            return 0.0
        return max(0.0, job.next_attempt_at - self._ctx.clock.time())

    def poll_soon(self, job_id: int) -> None:
        """Act on ``job_id`` at its next look (a cancel was requested)."""
        with self._lock:
            timer = self._timers.get(job_id)
            if timer is not None:
                timer.next_at = self._ctx.clock.monotonic()

    def run(self, job: Job) -> None:
        """The poll task: one ``get``, then the job's next poll time (or its timer ends)."""
        outcome = poll(self._ctx, job)
        now = self._ctx.clock.monotonic()
        with self._lock:
            timer = self._timers.get(job.id)
        if timer is None:
            return
        if isinstance(outcome.error, ApiNotFound) and self._expired(job, timer):
            return
        if outcome.error is not None:
            self._failed(job, timer, outcome.error, now)
            return
        if outcome.status is None:  # left queued
            with self._lock:
                self._timers.pop(job.id, None)
            if self._ctx.journal.get(job.id).state is JobState.DOWNLOADING:
                self._estimator.observe(job.source.request.sep_type, now - timer.started_at)
            return
        timer.not_found, timer.first_not_found_at = 0, None
        timer.next_at = now + self.next_delay_s(
            job, outcome.status, elapsed_s=now - timer.started_at
        )

    def _expired(self, job: Job, timer: PollTimer) -> bool:
        """Count a ``not_found``; True if it confirmed the expiry (the job left queued)."""
        wall = self._ctx.clock.time()
        timer.not_found += 1
        if timer.first_not_found_at is None:
            timer.first_not_found_at = wall
        due = retry.expiry_check_due(
            self._ctx.settings.expiry,
            created_at=job.intent_at if job.intent_at is not None else job.created_at,
            first_not_found_at=timer.first_not_found_at,
            not_found_count=timer.not_found,
            now=wall,
        )
        if not due:
            return False
        if not history_says_gone(self._ctx, job):
            log.info("get does not find the job, but the history has it; polling on", **ids(job))
            return False
        with self._lock:
            self._timers.pop(job.id, None)
        current = self._ctx.journal.get(job.id)
        if current.state is JobState.QUEUED:
            expired(self._ctx, current)
        return True

    def next_delay_s(self, job: Job, status: JobStatus, *, elapsed_s: float) -> float:
        position = status.current_order if status.current_order is not None else status.queue_count
        return self._policy.next_poll_delay(
            status=status.status,
            queue_position=position,
            finished_chunks=status.finished_chunks,
            all_chunks=status.all_chunks,
            elapsed_s=elapsed_s,
            expected_s=self._estimator.expected(job.source.request.sep_type),
            rng=self._ctx.rng,
        )

    def _failed(
        self, job: Job, timer: PollTimer, exc: RetryLater | ApiNotFound, now: float
    ) -> None:
        """Journal the failed poll (the streak survives a restart) and when to poll again."""
        job = self._ctx.journal.get(job.id)  # the streak so far, as journaled
        wall = self._ctx.clock.time()
        decision = retry.decide(
            exc,
            step=retry.Step.POLL,
            attempts=job.attempts,
            first_error_at=job.first_error_at,
            now=wall,
            policy=self._ctx.settings.retry_policy,
            rng=self._ctx.rng,
        )
        if decision.state is JobState.FAILED or job.state is not JobState.QUEUED:
            with self._lock:
                self._timers.pop(job.id, None)
            if job.state is JobState.QUEUED:
                fail(self._ctx, job, f"MVSEP status unavailable: {decision.reason}")
            return
        log.warning(
            "poll failed; will poll again",
            **ids(job),
            error=decision.reason,
            attempts=job.attempts + 1,
            retry_in_s=round(decision.delay_s, 2),
        )
        self._ctx.journal.mark_poll_failed(
            job.id, due_at=wall + decision.delay_s, error=decision.reason
        )
        timer.next_at = now + decision.delay_s


@dataclass
class PollOutcome:
    """What a poll learnt: ``status`` (None when the job left ``queued``)."""

    status: JobStatus | None = None
    error: RetryLater | ApiNotFound | None = None


def poll(ctx: Context, job: Job) -> PollOutcome:
    """One ``get`` of a queued job, and what follows from it."""
    assert job.mvsep_hash is not None
    try:
        status = ctx.client_for(job).get(job.mvsep_hash)
    except ApiNotFound as exc:  # not proof of expiry: see Polls._expired
        return PollOutcome(error=exc)
    except WillNeverWork as exc:
        fail(ctx, job, f"MVSEP refused the status request: {exc}")
        return PollOutcome()
    except RetryLater as exc:
        return PollOutcome(error=exc)
    return _after_status(ctx, job, status)


def _after_status(ctx: Context, job: Job, status: JobStatus) -> PollOutcome:
    if status.is_failed:
        reason = f"MVSEP failed the separation: {status.message or 'no reason given'}"
        fail(ctx, job, reason)
        return PollOutcome()
    if status.is_finished:
        if job.cancel_requested is not None:
            ctx.journal.mark_cancelled(job.id, f"{job.cancel_requested} (result discarded)")
            return PollOutcome()
        files = tuple(
            ResultFile(type=f.type, url=f.url, download=f.download or "") for f in status.files
        )
        ctx.journal.mark_result_ready(job.id, files)
        return PollOutcome()
    if status.status != job.mvsep_status or job.attempts:  # new, or the end of a streak
        data = {"queue_count": status.queue_count, "current_order": status.current_order}
        job = ctx.journal.mark_status(job.id, status.status, data=data)
    _progress_of(ctx, job, status)
    if job.cancel_requested is not None:
        return PollOutcome(status=status if cancel_at_mvsep(ctx, job, status) else None)
    return PollOutcome(status=status)


def _progress_of(ctx: Context, job: Job, status: JobStatus) -> None:
    ctx.progress(
        job.id,
        "queue",
        {
            "status": status.status,
            "queue_count": status.queue_count,
            "current_order": status.current_order,
            "finished_chunks": status.finished_chunks,
            "all_chunks": status.all_chunks,
        },
    )


def cancel_at_mvsep(ctx: Context, job: Job, status: JobStatus) -> bool:
    """Act on a cancel request of a queued job; True while the job stays queued."""
    assert job.mvsep_hash is not None
    if status.status == "waiting":
        try:
            message = ctx.client_for(job).cancel(job.mvsep_hash)
        except (ApiRejected, ApiNotFound) as exc:  # it started meanwhile: nothing to cancel
            log.info("MVSEP refused the cancel", **ids(job), error=str(exc))
        except RetryLater as exc:
            log.info("cancel failed; will try again", **ids(job), error=str(exc))
            return True
        else:
            reason = f"{job.cancel_requested}; cancelled at MVSEP before processing ({message})"
            ctx.journal.mark_cancelled(job.id, reason)
            return False
    if ctx.settings.on_cancel_processing == "keep":
        ctx.journal.mark_cancel_declined(job.id, "already processing at MVSEP; result kept")
    return True


def history_says_gone(ctx: Context, job: Job) -> bool:
    """Whether the account's history agrees that ``job``'s result is gone: its entry says
    ``job_exists`` false or ``time_left`` <= 0, or a complete search back to the job's
    creation does not list it. An unreadable history or a search cut short proves nothing."""
    try:
        entry, complete = find_by_hash(ctx, job)
    except ApiError as exc:
        log.info("history unreadable; expiry not confirmed", **ids(job), error=str(exc))
        return False
    if entry is None:
        return complete
    return not entry.job_exists or (entry.time_left is not None and entry.time_left <= 0)


def find_by_hash(ctx: Context, job: Job) -> tuple[HistoryEntry | None, bool]:
    """``(entry, complete)``: the history entry of ``job``'s hash (newest first, on the host
    the job lives on); ``complete``: the search covered every entry since its creation."""
    client = ctx.client_for(job)
    created = job.intent_at if job.intent_at is not None else job.created_at
    oldest_wanted = created - ctx.settings.history_margin_s
    for page in range(ctx.settings.history_max_pages):
        entries = client.separation_history(start=page * HISTORY_MAX_LIMIT, limit=HISTORY_MAX_LIMIT)
        for entry in entries:
            if entry.hash == job.mvsep_hash:
                return entry, True
        if len(entries) < HISTORY_MAX_LIMIT:
            return None, True
        last = _entry_time(entries[-1])
        if last is not None and last < oldest_wanted:
            return None, True
    return None, False


def _entry_time(entry: HistoryEntry) -> float | None:
    if not entry.created_at:
        return None
    try:
        stamp = datetime.strptime(entry.created_at, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


def expired(ctx: Context, job: Job) -> None:
    """MVSEP no longer knows the hash: report it; resubmit only if configured."""
    reason = (
        f"the result expired at MVSEP before it was downloaded (hash {job.mvsep_hash}); "
        "MVSEP keeps results about 72 hours"
    )
    log.warning("result expired at MVSEP", **ids(job))
    if ctx.settings.resubmit_expired:
        ctx.journal.mark_expired(job.id, reason)
    else:
        fail(ctx, job, reason)
