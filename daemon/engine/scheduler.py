"""The scheduler: one thread, a condition, a bounded worker pool, the journal as the truth.

The scheduler wakes on a :class:`threading.Condition` (a new file, a state change, a cancel,
a due time), reads every active job from the journal and hands each one that needs work to
the pool: ``prepare`` (sniff, hash, dedup), ``upload`` (after ``submitting`` is committed),
``reconcile`` (a create whose answer is unknown), ``poll`` (adaptive, jittered, at most one
``get`` per job per interval), ``download`` (stage, plan, file, dispose). At most ``slots``
jobs hold an MVSEP slot (``submitting`` + ``queued``); the next upload starts as soon as a
state change frees one. The count is :class:`~daemon.engine.slots.Slots`' (the account's
plan, read at start and every ``account_recheck_s``, asked again with backoff while MVSEP
cannot answer; lowered when MVSEP refuses a create as over its limit).
Uploads + downloads run at most ``max_transfers`` at once. All API
calls share the client's one pacer (the ``RequestGate`` the service built the client with).

In-memory state (what is running, poll timers) is a cache: a restart rebuilds it from the
journal and resumes every non-terminal job.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path

from daemon import media
from daemon.clock import Clock, SystemClock
from daemon.engine import credit_guard, credits, deliver, dispose, prepare, submit
from daemon.engine.changes import chain_listeners, change_fields, change_level
from daemon.engine.context import Context, ProgressHook, ids, journal_intact, log
from daemon.engine.dispose import finish_disposal
from daemon.engine.poll import Polls
from daemon.engine.requests import Requests
from daemon.engine.roots import MissingRoots
from daemon.engine.settings import EngineSettings
from daemon.engine.slots import Slots
from daemon.engine.submit import Upload
from daemon.errors import IllegalTransition, Stopping
from daemon.jobs import Job, JobState, SourceFile
from daemon.journal import ACCOUNT_NOTE, Journal
from daemon.media import AudioProbe
from daemon.mvsep.client import MvsepClient
from daemon.pacing import DurationEstimator, PollPolicy

__all__ = ["ENGINE_THREAD_PREFIX", "Engine"]

ENGINE_THREAD_PREFIX = "mvsep-engine"  # the pool's thread names: the service's exit looks

_TRANSFER_KINDS = frozenset({"upload", "download"})
_MAX_WAIT_S = 30.0
_NOT_SENT = frozenset({JobState.READY, JobState.HELD, JobState.RETRY_WAIT})


@dataclass
class _Task:
    kind: str
    future: Future[None]


class Engine:
    """Runs jobs from the journal to ``filed``/``failed``/``cancelled``. Thread-safe API."""

    def __init__(
        self,
        *,
        journal: Journal,
        client: MvsepClient,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        settings: EngineSettings | None = None,
        poll_policy: PollPolicy | None = None,
        estimator: DurationEstimator | None = None,
        probe: Callable[[Path], AudioProbe] | None = None,
        on_progress: ProgressHook | None = None,
        staging_dir: Path | None = None,
        premium: bool | None = None,
    ) -> None:
        if probe is None:
            probe = media.probe
        self._ctx = Context(
            journal=journal,
            client=client,
            settings=settings or EngineSettings(),
            clock=clock or SystemClock(),
            rng=rng or random.Random(),
            staging_dir=staging_dir or journal.path.parent / "staging",
            probe=probe,
            on_progress=on_progress,
        )
        self._polls = Polls(
            self._ctx,
            policy=poll_policy or PollPolicy(),
            estimator=estimator or DurationEstimator(),
        )
        self._cond = threading.Condition()
        self._polls.wake = self.wake  # the queue watch found a done job unseen
        self._woken = False
        self._tasks: dict[int, _Task] = {}
        self._not_before: dict[int, float] = {}
        note = functools.partial(journal.set_note, ACCOUNT_NOTE)  # the `status` banner
        self._slots = Slots(self._ctx.settings, client.user, rng=self._ctx.rng, on_pause=note)
        self._slots.premium = premium  # the plan caps follow it; account reads update it
        self._started = False
        self._account_reading = False
        self._roots = MissingRoots()
        self.last_tick: float | None = None  # time.monotonic() of the last pass: sd watchdog
        self._requests = Requests(self._ctx, cancel=self.cancel_job)  # `jobs retry` etc.
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        journal.on_change = chain_listeners(journal.on_change, self._on_change)

    # ------------------------------------------------------------ public API

    @property
    def journal(self) -> Journal:
        return self._ctx.journal

    @property
    def slots(self) -> int | None:
        """The MVSEP parallel-job limit in force (``None`` until the engine has started)."""
        return self._slots.limit if self._started else None

    @property
    def slots_known(self) -> bool:
        """Whether :attr:`slots` rests on the setting or the account (not a guess)."""
        return self._slots.known

    def recheck_account(self) -> None:
        """Read the account again now (a new token was given): a pause ends if it works."""
        self._slots.recheck()
        self.wake()

    def submit_file(self, source: SourceFile) -> int | None:
        """Journal a new job for ``source``; ``None`` if this exact file is already known."""
        stat = source.path.stat()
        job, created = self.journal.record_seen(source, size=stat.st_size, mtime=stat.st_mtime)
        if created:
            self._supersede_older(job)
        self.wake()
        return job.id if created else None

    def _supersede_older(self, job: Job) -> None:
        """The file at this path changed since an earlier job saw it (a copy that paused and
        went on, a file saved again): an earlier job that never reached MVSEP is dropped, so
        only the newest version is sent. Jobs already sent are left to finish."""
        for old in self.journal.active_for_path(job.source.path):
            never_sent = old.nonce is None and old.mvsep_hash is None
            if old.id < job.id and never_sent and old.state in _NOT_SENT:
                reason = f"superseded by job {job.id}: the file changed"
                self._cancel(old.id, reason, source_gone=False)

    def cancel_path(self, path: Path, reason: str) -> None:
        """The input at ``path`` was removed: cancel the jobs of the file that was there
        (:func:`~daemon.engine.dispose.removed_jobs`: a replaced version's job goes on)."""
        for job in dispose.removed_jobs(self.journal.jobs_for_path(path)):
            self._cancel(job.id, reason, source_gone=True)

    def cancel_job(self, job_id: int, reason: str) -> None:
        """Cancel a job: at once before submit, via MVSEP's cancel while waiting there, or per
        ``on_cancel_processing`` (discard / keep) once it is processing."""
        self._cancel(job_id, reason, source_gone=False)

    def _cancel(self, job_id: int, reason: str, *, source_gone: bool) -> None:
        job = self.journal.request_cancel(
            job_id,
            reason,
            processing=self._ctx.settings.on_cancel_processing,
            source_gone=source_gone,
        )
        if job.cancel_requested is not None:
            self._polls.poll_soon(job_id)  # act on it at the next poll
        self.wake()

    def start(self) -> None:
        """Start the scheduler; resumes every non-terminal job found in the journal."""
        if self._thread is not None:
            return
        settings = self._ctx.settings
        self._ctx.stopping.clear()
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_transfers + settings.api_workers,
            thread_name_prefix=ENGINE_THREAD_PREFIX,
        )
        self._thread = threading.Thread(target=self._run, name="mvsep-scheduler", daemon=True)
        self._thread.start()
        self._requests.start(self.wake)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking work, abort transfers, let journal writes finish; return within
        ``timeout_s``. Jobs at MVSEP keep running; uploads in flight reconcile on restart
        and downloads resume from their ``.part``."""
        clock = self._ctx.clock
        deadline = clock.monotonic() + timeout_s
        self._ctx.stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - clock.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._cond:
            futures = [t.future for t in self._tasks.values()]
        wait_futures(futures, timeout=max(0.0, deadline - clock.monotonic()))
        self._thread = None
        self._pool = None
        log.info("engine stopped", unfinished_tasks=sum(not f.done() for f in futures))

    def run_until_idle(self, timeout_s: float | None = None) -> bool:
        """Block until no job is active and nothing runs, then settle credits (True), or until
        ``timeout_s`` passed."""
        self.start()
        clock = self._ctx.clock
        deadline = None if timeout_s is None else clock.monotonic() + timeout_s
        with self._cond:
            while not self._is_idle():
                remaining = _MAX_WAIT_S if deadline is None else deadline - clock.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        credits.settle_now(self._ctx)  # a one-shot run ends with its jobs' credits
        return True

    def wake(self) -> None:
        """Make the scheduler look at the journal now."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def in_flight(self) -> dict[int, str]:
        """Job id → the step running for it now (for status displays and benchmarks)."""
        with self._cond:
            return {job_id: task.kind for job_id, task in self._tasks.items()}

    # ------------------------------------------------------------ scheduler

    def _run(self) -> None:
        self._read_account()  # the first read before any claim; then when due (tick)
        self._started = True
        log.info("engine started", slots=self._slots.limit, slots_known=self._slots.known)
        while not self._ctx.stopping.is_set() and journal_intact(self._ctx):
            self.last_tick = time.monotonic()  # real time: liveness, not the scheduling clock
            try:
                wait_s = self.tick(self._ctx.clock.monotonic())
            except Exception:
                if self.journal.closed:  # closed under a running engine: nothing left to do
                    log.warning("journal closed while the engine ran; the engine stops")
                    return
                log.exception("scheduler pass failed; retrying")
                wait_s = self._ctx.settings.error_pause_s
            with self._cond:
                self._cond.notify_all()  # idle waiters re-check
                if not self._woken and not self._ctx.stopping.is_set():
                    self._cond.wait(max(0.0, min(wait_s, _MAX_WAIT_S)))
                self._woken = False

    def _read_account(self) -> None:
        """One account read (never raises); the next is due per :class:`Slots`."""
        try:
            if self._slots.read_due_in(self._ctx.clock.monotonic()) is not None:
                self._slots.read(self._ctx.clock.monotonic())
        except Stopping:
            pass
        finally:
            with self._cond:
                self._account_reading = False
                self._woken = True
                self._cond.notify_all()

    def _account_due(self, now: float) -> float | None:
        """Start the account read on the pool when due; the seconds until it is due."""
        due_s = self._slots.read_due_in(now)
        if due_s is None or due_s > 0:
            return due_s
        pool = self._pool
        with self._cond:
            if pool is None or self._account_reading or self._ctx.stopping.is_set():
                return None
            self._account_reading = True
        try:
            pool.submit(self._read_account)
        except RuntimeError:  # pool shut down meanwhile
            with self._cond:
                self._account_reading = False
        return None

    def tick(self, now: float) -> float:
        """One pass over the journal at monotonic time ``now``: start every step that is
        due (on the worker pool, once :meth:`start` made one); return the seconds until
        something is due next. The scheduler thread calls it; a test may too."""
        next_s = _MAX_WAIT_S
        self._requests.tick(self._pool)
        for job in self.journal.undisposed():
            wait_s = max(dispose.due_in(self._ctx, job), self._not_before.get(job.id, 0.0) - now)
            if wait_s > 0:  # a disposal that failed, or a step that raised: not yet
                next_s = min(next_s, wait_s)
            else:
                self._dispatch(job, "dispose", self._dispose)
        jobs = self.journal.active_jobs()
        self._polls.backlog = sum(1 for j in jobs if j.state is JobState.READY)  # poll pace
        self._roots.check(jobs)
        if self._roots.missing:  # look for the share again at the configured pace
            next_s = min(next_s, self._ctx.settings.missing_inbox_recheck_s)
        for job in jobs:
            due_s = self._visit(job, now)
            if due_s is not None:
                next_s = min(next_s, due_s)
        self._fill_slots(jobs)
        next_s = min(next_s, credits.tick(self._ctx, self._pool, self.wake))  # filed jobs' cost
        account_s = self._account_due(now)  # after the credit guard, which may want a read
        if account_s is not None:
            next_s = min(next_s, account_s)
        return next_s

    def _visit(self, job: Job, now: float) -> float | None:
        """Start the step ``job`` needs now; or the seconds until it needs one."""
        with self._cond:
            if job.id in self._tasks:
                return None
            paused_until = self._not_before.get(job.id, 0.0)
        if paused_until > now:
            return paused_until - now
        handler = self._VISITORS.get(job.state)
        return None if handler is None else handler(self, job, now)

    def _visit_ready(self, job: Job, now: float) -> float | None:
        if job.cancel_requested is not None:
            self.journal.mark_cancelled(job.id, job.cancel_requested)
        elif job.sha256 is None and not self._roots.waits(job):
            self._dispatch(job, "prepare", lambda j: prepare.prepare(self._ctx, j))
        return None  # prepared jobs wait for a slot in _fill_slots

    def _visit_submitting(self, job: Job, now: float) -> float | None:
        self._dispatch(job, "reconcile", self._reconcile)
        return None

    def _visit_queued(self, job: Job, now: float) -> float | None:
        due_s = self._polls.due_in(job, now)
        if due_s > 0:
            return due_s
        self._dispatch(job, "poll", self._polls.run)
        return None

    def _visit_downloading(self, job: Job, now: float) -> float | None:
        if self._count(_TRANSFER_KINDS) < self._ctx.settings.max_transfers:
            self._dispatch(job, "download", lambda j: deliver.download_and_file(self._ctx, j))
        return None

    def _visit_retry_wait(self, job: Job, now: float) -> float | None:
        due = job.next_attempt_at or 0.0
        wait_s = due - self._ctx.clock.time()
        if wait_s > 0:
            return wait_s
        self.journal.resume_if_waiting(job.id)  # None: a cancel got there first
        return 0.0

    _VISITORS: Mapping[JobState, Callable[[Engine, Job, float], float | None]] = {
        JobState.READY: _visit_ready,
        JobState.SUBMITTING: _visit_submitting,
        JobState.QUEUED: _visit_queued,
        JobState.DOWNLOADING: _visit_downloading,
        JobState.RETRY_WAIT: _visit_retry_wait,
    }

    def _fill_slots(self, jobs: list[Job]) -> None:
        """Claim prepared ready jobs (``submitting`` committed first) while slots are free
        and the credit guard allows them (it holds the others)."""
        if self._slots.paused is not None:  # the account refused: nothing is claimed
            return
        allowed = credit_guard.admit(self._ctx, jobs, self._slots)
        holding = sum(1 for j in jobs if j.holds_slot)
        while holding < self._slots.limit and not self._ctx.stopping.is_set():
            if self._count(_TRANSFER_KINDS) >= self._ctx.settings.max_transfers:
                return
            with self._cond:
                busy = set(self._tasks)
            busy.update(j.id for j in jobs if self._roots.waits(j))
            job = credit_guard.claim(self._ctx, allowed, exclude=busy)
            if job is None:
                return
            holding += 1
            self._dispatch(job, "upload", self._upload)

    # ------------------------------------------------------------ tasks

    def _count(self, kinds: frozenset[str]) -> int:
        with self._cond:
            return sum(1 for t in self._tasks.values() if t.kind in kinds)

    def _dispatch(self, job: Job, kind: str, step: Callable[[Job], None]) -> None:
        pool = self._pool
        if pool is None or self._ctx.stopping.is_set():
            return
        with self._cond:
            if job.id in self._tasks:
                return
            if kind not in _TRANSFER_KINDS and self._count_api() >= self._ctx.settings.api_workers:
                return
            future: Future[None] = Future()
            self._tasks[job.id] = _Task(kind, future)
        if not self.journal.is_current(job):  # stale: a step or cancel committed since the read
            self._finish(job.id, future)  # the next pass (woken now) sees the job as it is
            return
        try:
            real = pool.submit(self._run_step, job, kind, step)
        except RuntimeError:  # pool shut down meanwhile
            self._finish(job.id, future)
            return
        real.add_done_callback(lambda _f: future.set_result(None))

    def _count_api(self) -> int:
        return sum(1 for t in self._tasks.values() if t.kind not in _TRANSFER_KINDS)

    def _run_step(self, job: Job, kind: str, step: Callable[[Job], None]) -> None:
        with self._cond:
            future = self._tasks[job.id].future
        try:
            step(job)
        except Stopping:
            log.info("job step stopped; resumes on restart", **ids(job), step=kind)
        except IllegalTransition:
            if not self._outrun_by_cancel(job, kind):
                self._step_failed(job, kind)
        except Exception:
            self._step_failed(job, kind)
        finally:
            self._finish(job.id, future)

    def _outrun_by_cancel(self, job: Job, kind: str) -> bool:
        """A step whose job was cancelled while it ran (a removed or superseded file)."""
        current = self.journal.get(job.id)
        if not current.state.is_terminal:
            return False
        log.info("job step outrun by a cancel", **ids(job), step=kind, state=current.state.value)
        return True

    def _step_failed(self, job: Job, kind: str) -> None:
        pause = self._ctx.settings.error_pause_s
        log.exception("job step failed unexpectedly", **ids(job), step=kind, pause_s=pause)
        with self._cond:
            self._not_before[job.id] = self._ctx.clock.monotonic() + pause

    def _finish(self, job_id: int, future: Future[None]) -> None:
        with self._cond:
            task = self._tasks.get(job_id)
            if task is not None and task.future is future:
                del self._tasks[job_id]
            self._woken = True
            self._cond.notify_all()

    def _pause(self, job_id: int, seconds: float) -> None:
        with self._cond:
            self._not_before[job_id] = self._ctx.clock.monotonic() + seconds

    def _upload(self, job: Job) -> None:
        outcome = submit.upload(
            self._ctx, job, on_account_refused=self._account_refused, premium=self._slots.premium
        )
        if outcome is Upload.UNKNOWN:  # look in the history at once (issue 9 item 6)
            self._reconcile(job)
        elif outcome is Upload.SLOTS_FULL:  # the server's limit: the others holding a slot
            self._slots.refused(self.journal.slots_held(), self._ctx.clock.monotonic())

    def _reconcile(self, job: Job) -> None:
        # The scheduler's snapshot may be stale: the upload that held this job may have just
        # stored its hash. Only a job still submitting (hash unknown) is reconciled.
        job = self.journal.get(job.id)
        if job.state != JobState.SUBMITTING or job.mvsep_hash is not None:
            return
        again_s = submit.reconcile(self._ctx, job, on_account_refused=self._account_refused)
        if again_s is not None:
            self._pause(job.id, again_s)

    def _account_refused(self, reason: str) -> None:
        self._slots.pause(reason, self._ctx.clock.monotonic())

    def _dispose(self, job: Job) -> None:
        finish_disposal(self._ctx, job)

    # ------------------------------------------------------------ journal listener

    def _on_change(self, job: Job, kind: str, reason: str) -> None:
        log.log(change_level(kind), f"job {kind}", **change_fields(job, kind, reason))
        self._ctx.progress(
            job.id, "state", {"state": job.state.value, "event": kind, "reason": reason}
        )
        if job.state.is_terminal and kind in ("cancelled", "failed"):
            deliver.drop_cancelled_staging(self._ctx, job)
        self.wake()

    def _is_idle(self) -> bool:
        if self._tasks:
            return False
        counts = self.journal.counts_by_state()
        if any(counts[s.value] for s in JobState if not s.is_terminal):
            return False
        return not self.journal.undisposed()
