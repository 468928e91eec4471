"""The ``submitting`` state's work: the create, and reconciling a create whose answer is unknown.

Never pay twice: the engine journals ``submitting`` (with a fresh nonce) BEFORE it calls
:func:`upload`; the nonce is the first part of the upload name, so MVSEP's hash
(``YYYYMMDDhhmmss-<hex>-<slug of the name>``) contains it. A create whose answer was lost
(:class:`~daemon.errors.OutcomeUnknown`, a crash, a stop) leaves the job in ``submitting``
and :func:`reconcile` looks the nonce up in ``separation_history`` before anything else:
at once after a lost answer (a 5xx, a timeout), again every ``reconcile_retry_s`` while it
is not there, for ``reconcile_grace_s`` after the intent. Absent after that, the create was
not received: that is a failed attempt like any other, so it goes through the retry policy
(:func:`~daemon.engine.retry.decide`: ``retry_wait`` with backoff, back to ``ready`` with a
new nonce, ``failed`` once the streak is older than ``retry_deadline_s``).
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime

from daemon.engine.context import Context, ids, log, record_error
from daemon.engine.dispose import fail
from daemon.engine.prepare import wait_for_inbox
from daemon.engine.retry import Step
from daemon.errors import (
    ApiError,
    ApiServerError,
    ApiSlotsFull,
    OutcomeUnknown,
    RetryLater,
    Stopping,
    WillNeverWork,
)
from daemon.jobs import Job, JobState
from daemon.mvsep.client import HISTORY_MAX_LIMIT, MvsepClient
from daemon.mvsep.models import HistoryEntry


def new_nonce() -> str:
    """12 lowercase hex digits: survive MVSEP's slugification of the upload name."""
    return secrets.token_hex(6)


def upload_name(job: Job) -> str:
    return f"{job.nonce}-{job.source.path.name}"


class Upload(enum.Enum):
    """What :func:`upload` leaves behind (the journal holds the job's new state)."""

    SENT = "sent"
    """Created: the hash is journaled (``queued``)."""
    UNKNOWN = "unknown"
    """The answer was lost: the job stays ``submitting``; reconcile through the history now."""
    STOPPED = "stopped"
    """The engine is stopping: the job stays ``submitting``; reconciled on restart."""
    SLOTS_FULL = "slots_full"
    """MVSEP refused it as over the account's parallel limit (recorded: ``retry_wait``)."""
    NOT_SENT = "not_sent"
    """Known not created; recorded (``retry_wait``, ``failed`` or ``cancelled``)."""


def upload(ctx: Context, job: Job) -> Upload:
    """POST the create for a job already journaled as ``submitting``."""
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
    except Stopping as exc:
        log.info("upload stopped; reconciled through the history on restart", **ids(job),
                 error=str(exc))  # fmt: skip
        return Upload.STOPPED
    except OutcomeUnknown as exc:
        log.warning(
            "create outcome unknown; looking in the history",
            **ids(job),
            error=str(exc),
        )
        return Upload.UNKNOWN
    except FileNotFoundError:  # not a byte was sent: nothing was created
        if not wait_for_inbox(ctx, job, resume=JobState.READY):
            fail(ctx, job, f"the input {job.source.path} disappeared before it was sent")
        return Upload.NOT_SENT
    except ApiSlotsFull as exc:
        record_error(ctx, job, exc, step=Step.UPLOAD)
        return Upload.SLOTS_FULL
    except (RetryLater, WillNeverWork, OSError) as exc:  # known: nothing was created
        record_error(ctx, job, exc, step=Step.UPLOAD)
        return Upload.NOT_SENT
    ctx.journal.mark_submitted(job.id, result.hash)
    return Upload.SENT


def entry_time(entry: HistoryEntry) -> float | None:
    """When a history entry was created (UTC assumed), or None when it does not say."""
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
        last = entry_time(entries[-1])
        if last is not None and last < oldest_wanted:
            return None
    return None


def reconcile(ctx: Context, job: Job) -> float | None:
    """Settle a ``submitting`` job whose create answer is unknown.

    Found in the history → ``queued`` with that hash. Absent and the grace period since the
    intent is over → not created: a failed attempt, through the retry policy (``retry_wait``
    then ``ready`` with a new nonce, or ``failed`` past the deadline; a job whose cancel was
    requested is ``cancelled``). Otherwise returns the seconds to wait before looking again.
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
        absent(ctx, job, waited)
        return None
    return max(ctx.settings.reconcile_retry_s, 0.05)


def absent(ctx: Context, job: Job, waited_s: float) -> None:
    """The create is not in the history ``waited_s`` after its intent: it was not received."""
    if job.cancel_requested is not None:
        ctx.journal.mark_reconciled_absent(job.id)  # nothing to cancel at MVSEP: cancelled
        return
    log.warning("create not received by MVSEP; it counts as a failed attempt", **ids(job))
    not_received = ApiServerError(
        f"MVSEP did not receive the create of {upload_name(job)!r}: not in its history "
        f"{waited_s:.0f} s after it was sent",
        endpoint="create",
    )
    record_error(ctx, job, not_received, step=Step.UPLOAD)
