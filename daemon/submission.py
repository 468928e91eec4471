"""The engine's steps that talk to MVSEP about a job: prepare, upload, reconcile, poll, cancel.

Never pay twice: the engine journals ``submitting`` (with a fresh nonce) BEFORE it calls
:func:`upload`; the nonce is the first part of the upload name, so MVSEP's hash
(``YYYYMMDDhhmmss-<hex>-<slug of the name>``) contains it. A create whose answer was lost
(:class:`~daemon.errors.OutcomeUnknown`, a crash, a stop) leaves the job in ``submitting``
and :func:`reconcile` looks the nonce up in ``separation_history`` before anything else.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.errors import (
    ApiError,
    ApiNotFound,
    ApiRejected,
    OutcomeUnknown,
    RetryLater,
    Stopping,
    WillNeverWork,
)
from daemon.jobs import Job, JobState, ResultFile, estimate_credits
from daemon.mvsep.client import HISTORY_MAX_LIMIT
from daemon.mvsep.models import HistoryEntry, JobStatus
from daemon.workflow import Context, fail, handle_error, log, wait_for_missing_folder

_HASH_CHUNK = 1024 * 1024


def new_nonce() -> str:
    """12 lowercase hex digits: survive MVSEP's slugification of the upload name."""
    return secrets.token_hex(6)


def upload_name(job: Job) -> str:
    return f"{job.nonce}-{job.source.path.name}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- prepare


def prepare(ctx: Context, job: Job) -> None:
    """Sniff (a non-audio file fails before any API call), hash, de-duplicate."""
    src = job.source.path
    if not src.is_file():
        if not _wait_for_inbox(ctx, job, resume=None):  # removed by its owner: nothing spent
            ctx.journal.mark_cancelled(job.id, f"the input {src} was removed before it was sent")
        return
    probe = ctx.probe(src)
    if not probe.ok:
        if probe.cut_off and _wait_for_copy(ctx, job, str(probe.reason)):
            return
        fail(ctx, job, f"not an audio file: {probe.reason}")
        return
    try:
        digest = sha256_of(src)
    except OSError as exc:
        handle_error(ctx, job, exc, resume=None)
        return
    if ctx.settings.dedupe_same_content and _file_duplicate(ctx, job, digest):
        return
    credits = estimate_credits(probe.duration_s, job.source.request.price_coefficient)
    ctx.journal.mark_prepared(job.id, digest, credits)


def _wait_for_inbox(ctx: Context, job: Job, *, resume: JobState | None) -> bool:
    """The input is missing. If its whole inbox folder is missing too, the share is
    unmounted (a NAS rebooting, a disk asleep): the job waits for it, never cancelled or
    failed for it. True if the job was deferred; False means the file alone was removed."""
    root = job.source.inbox_root
    if root.is_dir():
        return False
    reason = f"the inbox folder {root} is missing (unmounted share?): waiting for it to come back"
    wait_for_missing_folder(ctx, job, reason, resume=resume)
    return True


def _wait_for_copy(ctx: Context, job: Job, reason: str) -> bool:
    """A cut-off file that changed recently may still be arriving: check it again later.

    True if the job was deferred. When the copy goes on, the watcher reports the new version
    and the engine supersedes this job; when nothing changes for ``cut_off_wait_s``, the file
    is damaged and fails.
    """
    try:
        age = ctx.clock.time() - job.source.path.stat().st_mtime
    except OSError:
        return False
    wait_s = ctx.settings.cut_off_wait_s
    if age >= wait_s:
        return False
    due = ctx.clock.time() + min(ctx.settings.cut_off_recheck_s, wait_s - age)
    text = (
        f"{reason}; it changed {age:.0f} s ago, so a copy may still be under way: checked "
        f"again until it has been unchanged for {wait_s:.0f} s"
    )
    ctx.journal.mark_deferred(job.id, due_at=due, error=text)
    log.info("input looks cut off, waiting", job_id=job.id, file=str(job.source.path), age_s=age)
    return True


def _file_duplicate(ctx: Context, job: Job, digest: str) -> bool:
    earlier = ctx.journal.find_filed_duplicate(digest, job.source.request.key(), exclude_id=job.id)
    if earlier is None or len(earlier.outputs) != len(earlier.result_files):
        return False
    if not earlier.outputs or not all(Path(p).is_file() for p in earlier.outputs if p):
        return False
    files = tuple(
        ResultFile(type=f.type, download=f.download, local=out)
        for f, out in zip(earlier.result_files, earlier.outputs, strict=True)
        if out
    )
    if not files:
        return False
    ctx.journal.mark_duplicate(job.id, of_job=earlier.id, files=files, sha256=digest)
    return True


# ---------------------------------------------------------------- upload


def upload(ctx: Context, job: Job) -> bool:
    """POST the create for a job already journaled as ``submitting``.

    Returns False when the outcome is unknown (the job stays ``submitting``: reconcile).
    """
    request = job.source.request

    def progress(sent: int, total: int) -> None:
        ctx.check_abort()
        ctx.progress(job.id, "upload", {"sent": sent, "total": total})

    try:
        result = ctx.client.create(
            sep_type=request.sep_type,
            output_format=request.output_format,
            options=request.options,
            file=job.source.path,
            upload_name=upload_name(job),
            progress=progress,
        )
    except (OutcomeUnknown, Stopping) as exc:
        log.warning(
            "create outcome unknown; will reconcile through the history",
            job_id=job.id,
            file=str(job.source.path),
            error=str(exc),
        )
        return False
    except (RetryLater, WillNeverWork) as exc:  # known: nothing was created
        handle_error(ctx, job, exc, resume=JobState.READY)
        return True
    except FileNotFoundError:  # not a byte was sent: nothing was created
        if not _wait_for_inbox(ctx, job, resume=JobState.READY):
            fail(ctx, job, f"the input {job.source.path} disappeared before it was sent")
        return True
    except OSError as exc:
        handle_error(ctx, job, exc, resume=JobState.READY)
        return True
    ctx.journal.mark_submitted(job.id, result.hash)
    return True


# ---------------------------------------------------------------- reconcile


def _entry_time(entry: HistoryEntry) -> float | None:
    if not entry.created_at:
        return None
    try:
        stamp = datetime.strptime(entry.created_at, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


def find_in_history(ctx: Context, nonce: str, intent_at: float) -> HistoryEntry | None:
    """Page through the history (newest first) for the hash holding ``nonce``."""
    oldest_wanted = intent_at - ctx.settings.history_margin_s
    for page in range(ctx.settings.history_max_pages):
        entries = ctx.client.separation_history(
            start=page * HISTORY_MAX_LIMIT, limit=HISTORY_MAX_LIMIT
        )
        for entry in entries:
            if nonce in entry.hash:
                return entry
        if len(entries) < HISTORY_MAX_LIMIT:
            return None
        last = _entry_time(entries[-1])
        if last is not None and last < oldest_wanted:
            return None
    return None


def reconcile(ctx: Context, job: Job) -> float | None:
    """Settle a ``submitting`` job whose create answer is unknown.

    Found in the history → ``queued`` with that hash. Absent and the grace period since the
    intent is over → ``ready`` (may be submitted again). Otherwise returns the seconds to
    wait before looking again.
    """
    assert job.nonce is not None and job.intent_at is not None
    try:
        entry = find_in_history(ctx, job.nonce, job.intent_at)
    except ApiError as exc:
        if isinstance(exc, RetryLater):
            handle_error(ctx, job, exc, resume=JobState.SUBMITTING)
            return None
        fail(ctx, job, f"could not check MVSEP's history for upload {upload_name(job)!r}: {exc}")
        return None
    if entry is not None:
        ctx.journal.mark_submitted(job.id, entry.hash, reconciled=True, credits=entry.credits)
        return None
    waited = ctx.clock.time() - job.intent_at
    if waited >= ctx.settings.reconcile_grace_s:
        ctx.journal.mark_reconciled_absent(job.id)
        return None
    return max(ctx.settings.reconcile_retry_s, 0.05)


# ---------------------------------------------------------------- poll and cancel


@dataclass
class PollOutcome:
    """What a poll learnt: ``status`` (None when the job left ``queued``)."""

    status: JobStatus | None = None
    error: bool = False


def poll(ctx: Context, job: Job) -> PollOutcome:
    """One ``get`` of a queued job, and what follows from it."""
    assert job.mvsep_hash is not None
    try:
        status = ctx.client.get(job.mvsep_hash)
    except ApiNotFound:
        expired(ctx, job)
        return PollOutcome()
    except WillNeverWork as exc:
        fail(ctx, job, f"MVSEP refused the status request: {exc}")
        return PollOutcome()
    except RetryLater as exc:
        log.info("poll failed; will poll again", **_ids(job), error=str(exc))
        return PollOutcome(error=True)
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
    if status.status != job.mvsep_status:
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
            message = ctx.client.cancel(job.mvsep_hash)
        except ApiRejected as exc:  # it started meanwhile
            log.info("MVSEP refused the cancel", **_ids(job), error=str(exc))
        except RetryLater as exc:
            log.info("cancel failed; will try again", **_ids(job), error=str(exc))
            return True
        else:
            reason = f"{job.cancel_requested}; cancelled at MVSEP before processing ({message})"
            ctx.journal.mark_cancelled(job.id, reason)
            return False
    if ctx.settings.cancel_processing == "keep":
        ctx.journal.mark_cancel_declined(job.id, "already processing at MVSEP; result kept")
    return True


def _ids(job: Job) -> dict[str, object]:
    """What every job log line carries."""
    return {"job_id": job.id, "file": str(job.source.path)}


def expired(ctx: Context, job: Job) -> None:
    """MVSEP no longer knows the hash: report it; resubmit only if configured."""
    reason = (
        f"the result expired at MVSEP before it was downloaded (hash {job.mvsep_hash}); "
        "MVSEP keeps results about 72 hours"
    )
    log.warning("result expired at MVSEP", job_id=job.id, file=str(job.source.path))
    if ctx.settings.resubmit_expired:
        ctx.journal.mark_expired(job.id, reason)
    else:
        fail(ctx, job, reason)
