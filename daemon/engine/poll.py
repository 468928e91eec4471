"""The ``queued`` state's work: fetch the status, and choose when to fetch it next.

:func:`poll` is one ``get`` (on the host the job lives on, ``Context.client_for``) and what
follows from it (``downloading``, ``failed``, expired, a cancel at MVSEP). :class:`Polls`
holds each queued job's timer; the next poll of every queued job comes from one pure plan
over all of them and the pacer's ``get`` budget (``daemon.poll_plan.PollPlanner``) or, after
an error, from ``daemon.engine.retry``. While jobs wait for a slot, the queue watch
(``daemon.engine.queue_watch``) reads the account's count of unfinished jobs and its
readings go into that budget (``done_hint``, ``known_running``). A healthy
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from daemon.engine import retry
from daemon.engine.context import Context, ids, log
from daemon.engine.dispose import fail
from daemon.engine.queue_watch import (
    QueueWatch,
    Reading,
    done_hint,
    known_running,
    worth_watching,
)
from daemon.errors import ApiError, ApiNotFound, ApiRejected, RetryLater, WillNeverWork
from daemon.jobs import Job, JobState, ResultFile
from daemon.mvsep.client import HISTORY_MAX_LIMIT
from daemon.mvsep.models import HistoryEntry, JobStatus
from daemon.pacing import DurationEstimator, Pacer, PollPolicy
from daemon.poll_plan import UNLIMITED, Budget, JobView, Plan, PollPlanner, censored_mean

QUEUE_WATCH_S = 0.75
"""Seconds between two reads of the account's unfinished jobs while jobs wait for a slot
(80 a minute of the account route's 120; ``0`` turns the watch off)."""

WATCH_SPARE = 2
"""Places of the account route the watch leaves to other reads (balance, ``status``): at
60 a minute it reads every ~1.07 s, at 120 every ``QUEUE_WATCH_S``."""


@dataclass
class PollTimer:
    started_at: float  # monotonic: when this engine first saw the job queued
    next_at: float  # monotonic: not before (a failed poll's backoff, a journaled wait)
    input_s: float | None = None  # the input's duration (the estimator's prior)
    status: JobStatus | None = None  # the last answer
    last_poll_at: float | None = None  # monotonic: when that answer came
    running_at: float | None = None  # monotonic: a reading of the account showed it running
    visited_at: float = 0.0  # monotonic: the scheduler's last look (stale timers go)
    polling: bool = False  # dispatched, not answered yet
    not_found: int = 0  # not_found answers since the last status (see ExpiryPolicy)
    first_not_found_at: float | None = None  # wall clock


class Polls:
    """The poll timers of queued jobs and the step that runs one poll. Thread-safe.

    When each job is polled is the :class:`~daemon.poll_plan.PollPlanner`'s answer over all
    queued jobs at once, against the ``get`` route's budget in the client's pacer."""

    def __init__(
        self,
        ctx: Context,
        *,
        policy: PollPolicy,
        estimator: DurationEstimator,
        planner: PollPlanner | None = None,
        queue_watch_s: float = QUEUE_WATCH_S,
    ) -> None:
        self._ctx = ctx
        self._policy = policy
        self._estimator = estimator
        self._planner = planner if planner is not None else PollPlanner(policy=policy)
        self._lock = threading.Lock()
        self._timers: dict[int, PollTimer] = {}
        self._plan: Plan | None = None
        self._sep_types: dict[int, int] = {}
        self.backlog = 0
        """Jobs waiting here for a slot (the scheduler sets it each pass): see ``Budget``."""
        self.wake: Callable[[], None] | None = None
        """Called when the queue watch finds a done job unseen (the scheduler's wake)."""
        self._last_sent: float | None = None
        self._reading: Reading | None = None
        self._watch = QueueWatch(
            read=self._unfinished_at_mvsep,
            held=self._held,
            on_reading=self._on_reading,
            stopping=ctx.stopping,
            interval_s=queue_watch_s,
            clock=ctx.clock.monotonic,
            least_gap_s=self._watch_gap_s,
        )

    def due_in(self, job: Job, now: float) -> float:
        """Seconds until ``job`` is due for a poll (0 or less: now); starts its timer."""
        with self._lock:
            timer = self._timers.get(job.id)
            if timer is None:
                timer = PollTimer(started_at=now, next_at=now + self._journaled_wait_s(job))
                timer.input_s = self._input_s(job)
                self._timers[job.id] = timer
                self._sep_types[job.id] = job.source.request.sep_type
                self._plan = None
            timer.visited_at = now
            plan = self._plan
            if plan is None or plan.now != now or job.id not in plan.due_at:
                plan = self._plan = self._make_plan(now)
            due = max(timer.next_at, plan.due_at.get(job.id, now)) - now
            if due <= 0:
                timer.polling = True
                self._last_sent = now
                self._plan = None  # the budget just changed
            return due

    def _make_plan(self, now: float) -> Plan:
        stale = now - 2 * self._policy.max_interval_s - 60.0
        for job_id in [j for j, t in self._timers.items() if t.visited_at < stale]:
            if not self._timers[job_id].polling:
                del self._timers[job_id]
        views = [self._view(job_id, t) for job_id, t in self._timers.items() if not t.polling]
        sent = len(self._timers) - len(views)  # dispatched: the pacer may not count them yet
        watching = self._worth_watching()
        if watching:
            self._watch.want()
        return self._planner.plan(views, self._budget(now, sent, paced=watching), now)

    # -- the queue watch (daemon.engine.queue_watch) ------------------------------------------

    def _unfinished_at_mvsep(self) -> int | None:
        return self._ctx.client.user().current_queue

    def _held(self) -> frozenset[int] | None:
        """The jobs at MVSEP not seen done, while jobs wait for a slot (else None: no watch)."""
        with self._lock:
            return frozenset(self._timers) if self._worth_watching() else None

    def _worth_watching(self) -> bool:
        """(Under the lock.) Whether a read of the account can save ``get`` calls now."""
        spreads = [
            self._estimator.spread(self._sep_types.get(j, 0), input_s=t.input_s)
            for j, t in self._timers.items()
        ]
        return worth_watching(self.backlog, spreads)

    def _live_and_polling(self) -> tuple[frozenset[int], frozenset[int]]:
        """The jobs held (not seen done) and those of them with a ``get`` in flight."""
        polling = frozenset(j for j, t in self._timers.items() if t.polling)
        return frozenset(self._timers), polling

    def _hint(self) -> tuple[int, frozenset[int]]:
        return done_hint(self._reading, *self._live_and_polling())

    def _known_running(self, now: float) -> frozenset[int]:
        fresh_s = 2 * self._watch.gap_s() + 1.0  # a reading older than this says nothing
        return known_running(self._reading, *self._live_and_polling(), now, fresh_s)

    def _watch_gap_s(self) -> float:
        """The least gap between two reads of the account that its route's limit keeps up
        (``WATCH_SPARE`` places left for the other reads of the account)."""
        gate = self._ctx.client.counters.gate
        if not isinstance(gate, Pacer):
            return 0.0
        return gate.span_s / max(1, gate.cap("user") - WATCH_SPARE)

    def _on_reading(self, reading: Reading) -> None:
        with self._lock:
            self._reading = reading
            self._plan = None
            count, _ = self._hint()
            for job_id in known_running(reading, *self._live_and_polling(), reading.sent_at, 1.0):
                self._timers[job_id].running_at = reading.sent_at
        if count > 0 and self.wake is not None:
            self.wake()

    def _view(self, job_id: int, timer: PollTimer) -> JobView:
        sep_type = self._sep_types.get(job_id, 0)
        status = timer.status
        position = None
        if status is not None:
            position = status.current_order if status.current_order is not None else None
            position = position if position is not None else status.queue_count
        return JobView(
            job_id=job_id,
            started_at=timer.started_at,
            status=status.status if status is not None else "processing",
            queue_position=position,
            finished_chunks=status.finished_chunks if status is not None else None,
            all_chunks=status.all_chunks if status is not None else None,
            expected_s=self._estimator.expected(sep_type, input_s=timer.input_s),
            spread_s=self._estimator.spread(sep_type, input_s=timer.input_s),
            last_poll_at=timer.last_poll_at,
            running_at=timer.running_at,
        )

    def _budget(self, now: float, sent: int, *, paced: bool) -> Budget:
        """The ``get`` route's budget in the client's pacer (none: it never binds). The
        pacer reads ``now`` as its own clock's: one clock in the daemon."""
        gate = self._ctx.client.counters.gate
        if not isinstance(gate, Pacer):
            return UNLIMITED
        count, among = self._hint()
        return Budget(
            calls_left=max(0, gate.headroom("get", now) - sent),
            cap=gate.cap("get"),
            window_s=gate.span_s,
            backlog=self.backlog,
            last_sent_at=self._last_sent,
            done_hint=count,
            hint_jobs=among,
            known_running=self._known_running(now),
            paced=paced,
        )

    def _input_s(self, job: Job) -> float | None:
        """The input's duration (a header read, once per job); None if unreadable."""
        try:
            return self._ctx.probe(job.source.path).duration_s
        except Exception:  # a probe that raises only loses the prior
            return None

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
                timer.last_poll_at = None
                timer.status = None
                self._plan = None

    def run(self, job: Job) -> None:
        """The poll task: one ``get``, then the job's next poll time (or its timer ends)."""
        try:
            outcome = poll(self._ctx, job)
        finally:
            with self._lock:
                timer = self._timers.get(job.id)
                if timer is not None:
                    timer.polling = False
                self._plan = None
        now = self._ctx.clock.monotonic()
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
                self._observe_done(job, timer, now)
            return
        with self._lock:
            timer.not_found, timer.first_not_found_at = 0, None
            timer.status, timer.last_poll_at = outcome.status, now
            timer.next_at = now + self._policy.min_interval_s
            self._plan = None

    def _observe_done(self, job: Job, timer: PollTimer, now: float) -> None:
        """Feed the estimator the job's duration: done between its last not-done answer and
        this one, its expectation within those bounds (:func:`censored_mean`)."""
        sep_type = job.source.request.sep_type
        low = 0.0 if timer.last_poll_at is None else timer.last_poll_at - timer.started_at
        seconds = censored_mean(
            self._estimator.expected(sep_type, input_s=timer.input_s),
            self._estimator.spread(sep_type, input_s=timer.input_s),
            low,
            now - timer.started_at,
        )
        self._estimator.observe(
            sep_type, seconds, input_s=timer.input_s, within_s=now - timer.started_at - low
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
