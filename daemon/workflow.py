"""What the engine's steps share: settings, the context object, errors → job states.

Every step (``daemon.submission``, ``daemon.transfers``) takes a :class:`Context` and one
job, performs one piece of I/O and records the outcome in the journal. Outcomes are data:
:func:`handle_error` turns the ``daemon.errors`` tree into ``retry_wait`` (retry-later, with
capped exponential backoff + jitter until a deadline) or ``failed`` (will-never-work).
"""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from daemon import filing
from daemon.errors import ApiRateLimited, ApiSlotsFull, RetryLater, Stopping, WillNeverWork
from daemon.jobs import (
    CancelProcessing,
    Clock,
    Job,
    JobState,
    backoff_delay_s,
    deadline_passed,
)
from daemon.journal import Journal
from daemon.media import AudioProbe
from daemon.mvsep.client import MvsepClient

log = structlog.get_logger("daemon.engine")

ProgressHook = Callable[[int, str, Mapping[str, Any]], None]
"""``on_progress(job_id, kind, data)``; kinds: ``state``, ``queue``, ``upload``, ``download``."""


class SystemClock:
    """Real time: ``time.monotonic()`` and ``time.time()``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


@dataclass(frozen=True)
class EngineSettings:
    """Plain engine settings (``service.py`` maps the config onto these)."""

    max_in_flight: int | None = None
    """Jobs at MVSEP at once; ``None``: from ``/api/app/user`` (premium → ``premium_slots``)."""
    premium_slots: int = 10
    free_slots: int = 1
    max_transfers: int = 4
    """Uploads + downloads running at once."""
    api_workers: int = 4
    """Threads for polls, reconciliation, cancels and input preparation."""
    retry_base_s: float = 10.0
    retry_cap_s: float = 900.0
    retry_deadline_s: float = 24 * 3600.0
    """A retry-later error streak longer than this fails the job."""
    slots_full_retry_s: float = 20.0
    reconcile_grace_s: float = 120.0
    """A lost create absent from the history this long after its intent was not created."""
    reconcile_retry_s: float = 5.0
    history_margin_s: float = 24 * 3600.0
    """History entries older than intent minus this (any time zone) stop the search."""
    history_max_pages: int = 25
    resubmit_expired: bool = False
    dedupe_same_content: bool = True
    cancel_processing: CancelProcessing = "discard"
    error_pause_s: float = 5.0
    """Pause of a job after an unexpected exception in one of its steps (a bug)."""
    cut_off_wait_s: float = 900.0
    """A WAV/AIFF cut off before the end its header promises, changed less than this long
    ago, may be a copy that stalled (SMB, Wi-Fi): it is checked again, not failed, until it
    has been unchanged this long."""
    cut_off_recheck_s: float = 30.0
    missing_inbox_recheck_s: float = 60.0
    """A job whose inbox or output folder is missing (an unmounted share) waits this long
    between looks; it is never cancelled or failed for it."""


class Aborted(Stopping):
    """Raised from a transfer's progress callback when the engine stops or the job left
    ``downloading``."""


@dataclass
class Context:
    journal: Journal
    client: MvsepClient
    settings: EngineSettings
    clock: Clock
    rng: random.Random
    staging_dir: Path
    probe: Callable[[Path], AudioProbe]
    on_progress: ProgressHook | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def progress(self, job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        hook = self.on_progress
        if hook is None:
            return
        try:
            hook(job_id, kind, data)
        except Exception:  # a broken display must not break a job
            log.exception("progress hook failed", job_id=job_id, kind=kind)

    def check_abort(self) -> None:
        if self.stopping.is_set():
            raise Aborted("engine stopping")


def retry_delay_s(ctx: Context, job: Job, exc: BaseException) -> float:
    if isinstance(exc, ApiSlotsFull):
        return ctx.settings.slots_full_retry_s
    delay = backoff_delay_s(
        job.attempts + 1,
        base_s=ctx.settings.retry_base_s,
        cap_s=ctx.settings.retry_cap_s,
        rng=ctx.rng,
    )
    if isinstance(exc, ApiRateLimited) and exc.retry_after_s:
        delay = max(delay, exc.retry_after_s)
    return delay


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full: {exc}"
    name = type(exc).__name__
    return f"{name}: {exc}"


def handle_error(ctx: Context, job: Job, exc: BaseException, *, resume: JobState | None) -> Job:
    """Record ``exc`` for ``job``: ``retry_wait`` for transient errors, ``failed`` otherwise.

    ``resume``: the state to resume after the wait (``None``: the job's current one).
    """
    now = ctx.clock.time()
    text = describe_error(exc)
    if isinstance(exc, WillNeverWork):
        return fail(ctx, job, text)
    transient = isinstance(exc, RetryLater | OSError)
    if not transient:
        return fail(ctx, job, f"unexpected error: {text}")
    if (
        not isinstance(exc, ApiSlotsFull)
        and deadline_passed(job, now=now, deadline_s=ctx.settings.retry_deadline_s)
        and job.first_error_at is not None
    ):
        return fail(ctx, job, f"still failing after {job.attempts} attempts: {text}")
    due = now + retry_delay_s(ctx, job, exc)
    return ctx.journal.mark_deferred(job.id, due_at=due, error=text, resume=resume)


def fail(ctx: Context, job: Job, reason: str) -> Job:
    """``failed`` (committed first), then the input moves to the failed folder."""
    job = ctx.journal.mark_failed(job.id, reason)
    return move_failed_source(ctx, job)


def failure_details(job: Job) -> dict[str, str]:
    details = {
        "Job": str(job.id),
        "Preset": f"{job.source.preset} (sep_type {job.source.request.sep_type})",
        "MVSEP hash": job.mvsep_hash or "none (never created at MVSEP)",
    }
    if job.attempts:
        details["Attempts"] = str(job.attempts)
    return details


def move_failed_source(ctx: Context, job: Job) -> Job:
    """Move a failed job's input to its failed folder with ``NAME.error.txt`` (idempotent)."""
    src = job.source.path
    if job.source_disposed is not None:
        return job
    if not src.exists():
        return ctx.journal.mark_source_disposed(job.id, "missing")
    if not job.source.move_failed:
        return ctx.journal.mark_source_disposed(job.id, "kept")
    moved = filing.move_to_failed(
        src,
        job.source.failed_dir,
        reason=job.last_error or "unknown",
        details=failure_details(job),
    )
    return ctx.journal.mark_source_disposed(job.id, f"failed:{moved}")


def wait_for_missing_folder(
    ctx: Context, job: Job, reason: str, *, resume: JobState | None = None
) -> Job:
    """Defer a job whose inbox or output folder is missing (an unmounted share, a NAS
    rebooting): never cancelled or failed for it. It looks again after
    ``missing_inbox_recheck_s``, doubling up to 5 minutes so that a share away for days does
    not fill the journal; the warning is logged once, not at every look."""
    recheck_s = ctx.settings.missing_inbox_recheck_s
    delay = backoff_delay_s(
        job.attempts + 1, base_s=recheck_s, cap_s=max(recheck_s, 300.0), rng=ctx.rng
    )
    if job.last_error != reason:
        log.warning("job waits for a missing folder", job_id=job.id,
                    file=str(job.source.path), reason=reason)  # fmt: skip
    return ctx.journal.mark_deferred(
        job.id, due_at=ctx.clock.time() + delay, error=reason, resume=resume
    )


def dispose_filed_source(ctx: Context, job: Job) -> Job:
    """After ``filed`` is committed: archive, delete or keep the input (idempotent)."""
    if job.source_disposed is not None:
        return job
    mode = job.source.after_success
    archive = job.source.archive_dir or job.source.inbox_root / "_archive"
    result = filing.dispose_source(job.source.path, mode=mode, archive_dir=archive)
    if mode == "keep":
        how = "kept"
    elif mode == "delete":
        how = "deleted"
    else:
        how = f"archived:{result}" if result is not None else "missing"
    return ctx.journal.mark_source_disposed(job.id, how)


def finish_disposal(ctx: Context, job: Job) -> Job:
    """Complete a disposal cut off by a crash (filed → dispose; failed → failed folder)."""
    if job.state is JobState.FILED:
        return dispose_filed_source(ctx, job)
    return move_failed_source(ctx, job)
