"""After a terminal state: the input is archived, deleted or kept (``filed``), or moved to
the failed folder with ``NAME.error.txt`` (``failed``). Each is journaled as the job's
``source_disposed``; a disposal cut off by a crash is finished by :func:`finish_disposal`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon import filing
from daemon.config import ARCHIVE_DIR_NAME
from daemon.jobs import Job, JobState

if TYPE_CHECKING:
    from daemon.engine.context import Context


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


def dispose_filed_source(ctx: Context, job: Job) -> Job:
    """After ``filed`` is committed: archive, delete or keep the input (idempotent)."""
    if job.source_disposed is not None:
        return job
    mode = job.source.after_success
    archive = job.source.archive_dir or job.source.inbox_root / ARCHIVE_DIR_NAME
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
