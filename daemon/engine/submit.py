"""The ``submitting`` state's work: the create, and reconciling a create whose answer is unknown.

Never pay twice: the engine journals ``submitting`` (with a fresh nonce) BEFORE it calls
:func:`upload`; the nonce is the first part of the upload name, so MVSEP's hash
(``YYYYMMDDhhmmss-<hex>-<slug of the name>``) contains it. A create whose answer was lost
(:class:`~daemon.errors.OutcomeUnknown`, a crash, a stop) leaves the job in ``submitting``
and :func:`reconcile` looks the nonce up in ``separation_history`` before anything else.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from daemon.engine.context import Context, ids, log, record_error
from daemon.engine.dispose import fail
from daemon.engine.prepare import wait_for_inbox
from daemon.engine.retry import Step
from daemon.errors import ApiError, OutcomeUnknown, RetryLater, Stopping, WillNeverWork
from daemon.jobs import Job, JobState
from daemon.mvsep.client import HISTORY_MAX_LIMIT, MvsepClient
from daemon.mvsep.models import HistoryEntry


def new_nonce() -> str:
    """12 lowercase hex digits: survive MVSEP's slugification of the upload name."""
    return secrets.token_hex(6)


def upload_name(job: Job) -> str:
    return f"{job.nonce}-{job.source.path.name}"


def upload(ctx: Context, job: Job) -> bool:
    """POST the create for a job already journaled as ``submitting``.

    Returns False when the outcome is unknown (the job stays ``submitting``: reconcile).
    """
    request = job.source.request

    def progress(sent: int, total: int) -> None:
        ctx.check_abort()
        ctx.progress(job.id, "upload", {"sent": sent, "total": total})

    try:
        result = ctx.client_for(job).create(
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
            **ids(job),
            error=str(exc),
        )
        return False
    except FileNotFoundError:  # not a byte was sent: nothing was created
        if not wait_for_inbox(ctx, job, resume=JobState.READY):
            fail(ctx, job, f"the input {job.source.path} disappeared before it was sent")
        return True
    except (RetryLater, WillNeverWork, OSError) as exc:  # known: nothing was created
        record_error(ctx, job, exc, step=Step.UPLOAD)
        return True
    ctx.journal.mark_submitted(job.id, result.hash)
    return True


def _entry_time(entry: HistoryEntry) -> float | None:
    if not entry.created_at:
        return None
    try:
        stamp = datetime.strptime(entry.created_at, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


def find_in_history(
    ctx: Context, nonce: str, intent_at: float, client: MvsepClient
) -> HistoryEntry | None:
    """Page through the history (newest first) for the hash holding ``nonce``."""
    oldest_wanted = intent_at - ctx.settings.history_margin_s
    for page in range(ctx.settings.history_max_pages):
        entries = client.separation_history(start=page * HISTORY_MAX_LIMIT, limit=HISTORY_MAX_LIMIT)
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
        entry = find_in_history(ctx, job.nonce, job.intent_at, ctx.client_for(job))
    except ApiError as exc:
        if isinstance(exc, RetryLater):
            record_error(ctx, job, exc, step=Step.RECONCILE)
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
