"""After a terminal state: the input is archived, deleted or kept (``filed``), or moved to
the failed folder with ``NAME.error.txt`` (``failed``). Each is journaled as the job's
``source_disposed``; a disposal cut off by a crash is finished by :func:`finish_disposal`.

A disposal that fails (an archive folder under a regular file, a failed folder that cannot
be created, a share gone) is data, not a crash: the journal records a ``dispose_error``
event (attempt number, due time) and the job's last error, so a restart remembers the
streak. The scheduler asks :func:`due_in` before trying again (growing delay, from
``retry_base_s`` to ``retry_cap_s``); the first failure is logged at WARNING, the retries
at DEBUG. After ``retry_deadline_s`` the disposal is given up: the input stays where it is
(``source_disposed = "left"``), logged at ERROR and shown by ``status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon import filing
from daemon.config import ARCHIVE_DIR_NAME
from daemon.engine import retry
from daemon.engine.identity import is_same_file
from daemon.jobs import Job, JobState

if TYPE_CHECKING:
    from daemon.engine.context import Context

log = structlog.get_logger("daemon.engine")

_ALL_EVENTS = 1_000_000

LEFT = "left"
"""``source_disposed`` of an input left in place because its disposal kept failing."""

REPLACED = "replaced"
"""``source_disposed`` of a job whose input was replaced by another file at the same path
since it was seen: that file is another job's, left alone (issue 9 item 1)."""


def fail(ctx: Context, job: Job, reason: str) -> Job:
    """``failed`` (committed first), then the input moves to the failed folder."""
    job = ctx.journal.mark_failed(job.id, reason)
    log.warning("job ended as failed", job_id=job.id, file=str(job.source.path), reason=reason)
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


def _failure_reason(ctx: Context, job: Job) -> str:
    """Why the job failed (its ``failed`` event), not a later disposal error."""
    for event in reversed(ctx.journal.events(job.id, limit=_ALL_EVENTS)):
        if event.kind == "failed" and event.reason:
            return event.reason
    return job.last_error or "unknown"


def move_failed_source(ctx: Context, job: Job) -> Job:
    """Move a failed job's input to its failed folder with ``NAME.error.txt`` (idempotent)."""
    src = job.source.path
    if job.source_disposed is not None:
        return job
    if not src.exists():
        return ctx.journal.mark_source_disposed(job.id, "missing")
    if not _still_ours(ctx, job):
        return ctx.journal.mark_source_disposed(job.id, REPLACED)
    if not job.source.move_failed:
        return ctx.journal.mark_source_disposed(job.id, "kept")
    reason = _failure_reason(ctx, job)
    try:
        moved = filing.move_to_failed(
            src, job.source.failed_dir, reason=reason, details=failure_details(job)
        )
    except OSError as exc:
        what = f"the input could not be moved to the failed folder {job.source.failed_dir}"
        return _disposal_failed(ctx, job, exc, what=what, keep_reason=reason)
    log.info("input moved to the failed folder", **_ids(job), path=str(moved))
    return ctx.journal.mark_source_disposed(job.id, f"failed:{moved}")


def archive_dir(job: Job) -> Path:
    return job.source.archive_dir or job.source.inbox_root / ARCHIVE_DIR_NAME


def dispose_filed_source(ctx: Context, job: Job) -> Job:
    """After ``filed`` is committed: archive, delete or keep the input (idempotent)."""
    if job.source_disposed is not None:
        return job
    mode = job.source.after_success
    if mode != "keep" and not _still_ours(ctx, job):
        return ctx.journal.mark_source_disposed(job.id, REPLACED)
    archive = archive_dir(job)
    try:
        result = filing.dispose_source(job.source.path, mode=mode, archive_dir=archive)
    except OSError as exc:
        target = f"archived into {archive}" if mode == "archive" else "deleted"
        return _disposal_failed(ctx, job, exc, what=f"the input could not be {target}")
    if mode == "keep":
        how = "kept"
    elif mode == "delete":
        how = "deleted"
    else:
        how = f"archived:{result}" if result is not None else "missing"
    if result is not None and mode == "archive":
        log.info("input archived", **_ids(job), path=str(result))
    return ctx.journal.mark_source_disposed(job.id, how)


def finish_disposal(ctx: Context, job: Job) -> Job:
    """Complete a disposal cut off by a crash or failed before (filed → dispose; failed →
    failed folder). The scheduler calls it once :func:`due_in` says it is due."""
    if job.state is JobState.FILED:
        return dispose_filed_source(ctx, job)
    return move_failed_source(ctx, job)


def _still_ours(ctx: Context, job: Job) -> bool:
    """True if the file at the job's path is the one it sent, or nothing is there (the
    archive/delete/move is then a no-op). Another file there is left alone: logged once."""
    same = is_same_file(job)
    if same is not False:
        return True
    log.info("input replaced since it was sent: the file now at its path is left to its own job",
             **_ids(job))  # fmt: skip
    return False


def replaced_not_removed(job: Job) -> bool:
    """The watcher reported the job's path removed, but another file is there now (a new
    version put over the old one): the new file is reported as its own job, and this job
    goes on (a paid job is never cancelled for being replaced; its disposal leaves the new
    file alone). Its own file still there, or nothing there: a removal."""
    return is_same_file(job) is False


def removed_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Of every job seen at one path, those its removal cancels: unfinished, the newest
    version's. A job whose file had been replaced by a newer version (a later job of the
    path) lost nothing now and goes on, even when that newer file is what left (archived
    after its own job, or deleted); a job whose file is still there was not removed."""
    newest = max((j.id for j in jobs), default=0)
    out = []
    for job in jobs:
        if job.state.is_terminal or replaced_not_removed(job):
            continue
        if job.id < newest:
            log.info("an earlier version's job goes on: its file was replaced, not removed",
                     **_ids(job), newer_job=newest)  # fmt: skip
            continue
        out.append(job)
    return out


# ---------------------------------------------------------------- disposal errors


def _ids(job: Job) -> dict[str, object]:
    return {"job_id": job.id, "file": str(job.source.path)}


def _last_dispose_error(ctx: Context, job: Job) -> dict[str, float] | None:
    """The data of the job's latest ``dispose_error`` event (attempt, due_at, first_at)."""
    for event in reversed(ctx.journal.events(job.id, limit=_ALL_EVENTS)):
        if event.kind == "dispose_error":
            return {k: float(v) for k, v in (event.data or {}).items()}
    return None


def due_in(ctx: Context, job: Job) -> float:
    """Seconds until the undisposed ``job`` may be tried again (0: now)."""
    last = _last_dispose_error(ctx, job)
    if last is None:
        return 0.0
    return max(0.0, last.get("due_at", 0.0) - ctx.clock.time())


def _disposal_failed(
    ctx: Context, job: Job, exc: OSError, *, what: str, keep_reason: str | None = None
) -> Job:
    """Journal a failed disposal (back off), or give it up once the streak is too old."""
    now = ctx.clock.time()
    last = _last_dispose_error(ctx, job)
    attempt = 1 if last is None else int(last.get("attempt", 0)) + 1
    first_at = now if last is None else last.get("first_at", now)
    error = f"{what}: {retry.describe_error(exc)}"
    policy = ctx.settings.retry_policy
    if retry.deadline_passed(first_at, now=now, deadline_s=policy.retry_deadline_s):
        return _give_up(ctx, job, error, attempt=attempt, keep_reason=keep_reason)
    delay = retry.backoff_delay_s(
        attempt, base_s=policy.retry_base_s, cap_s=policy.retry_cap_s, rng=ctx.rng
    )
    shown = f"{error} (attempt {attempt}; tried again in {delay:.0f} s)"
    if keep_reason is not None:
        shown = f"{keep_reason}; then {shown}"
    fields = {**_ids(job), "error": error, "attempt": attempt, "retry_in_s": round(delay, 1)}
    if attempt == 1:
        log.warning("disposal of the input failed; trying again later", **fields)
    else:
        log.debug("disposal of the input failed again", **fields)
    data = {"attempt": attempt, "due_at": now + delay, "first_at": first_at}
    return ctx.journal.mark_dispose_error(job.id, error, last_error=shown, data=data)


def _give_up(ctx: Context, job: Job, error: str, *, attempt: int, keep_reason: str | None) -> Job:
    src = job.source.path
    shown = f"{error}; gave up after {attempt} attempts: the input stays at {src}"
    if keep_reason is not None:
        shown = f"{keep_reason}; then {shown}"
    log.error("disposal of the input given up; it stays where it is", **_ids(job),
              path=str(src), error=error, attempts=attempt)  # fmt: skip
    data = {"attempt": attempt, "gave_up": 1.0}
    ctx.journal.mark_dispose_error(job.id, error, last_error=shown, data=data)
    return ctx.journal.mark_source_disposed(job.id, LEFT)
