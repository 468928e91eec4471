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
from collections.abc import Callable
from datetime import UTC, datetime

from daemon.engine.context import Context, ids, log, record_error
from daemon.engine.dispose import fail
from daemon.engine.identity import open_as_seen
from daemon.engine.prepare import superseded, wait_for_inbox
from daemon.engine.retry import Step
from daemon.engine.slots import account_problem
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
    PAUSED = "paused"
    """The account refused it (not the job): back to wait, no attempt counted."""


AccountRefused = Callable[[str], None]
"""Told why the account (not the job) was refused: the engine pauses every submit."""

ACCOUNT_RECHECK_S = 5.0
"""A job put back by an account refusal looks again this often (it waits unclaimed while
the pause lasts, so this only bounds the journal churn)."""


def plan_cap(ctx: Context, job: Job, premium: bool | None) -> str | None:
    """Why the input is over the account's plan caps (size, duration), before any byte is
    sent; None when it fits. An account not read yet is held to the premium caps (the
    larger: MVSEP still refuses what its plan does not take)."""
    settings = ctx.settings
    plan = "free" if premium is False else "premium"
    max_mb = settings.free_max_file_mb if plan == "free" else settings.premium_max_file_mb
    max_min = (
        settings.free_max_duration_min if plan == "free" else settings.premium_max_duration_min
    )
    size = job.source.path.stat().st_size
    if size > max_mb * 1e6:
        return f"over the {plan} plan's size cap: {size / 1e6:.1f} MB > {max_mb:g} MB"
    duration_s = ctx.probe(job.source.path).duration_s
    if duration_s is not None and duration_s > max_min * 60:
        return f"over the {plan} plan's duration cap: {duration_s / 60:.1f} min > {max_min:g} min"
    return None


def put_back(ctx: Context, job: Job, reason: str) -> None:
    """Known not created, refused for the account: the job waits (``retry_wait`` → ``ready``,
    a look, not an attempt: never failed for it), its file where it is."""
    ctx.journal.mark_deferred(
        job.id,
        due_at=ctx.clock.time() + ACCOUNT_RECHECK_S,
        error=f"waiting for the MVSEP account: {reason}",
        resume=JobState.READY,
        recheck=True,
    )


def over_caps(ctx: Context, job: Job, premium: bool | None) -> bool:
    """Fail a job whose input is over the plan caps (nothing sent); True if it was."""
    try:
        over = plan_cap(ctx, job, premium)
    except FileNotFoundError:
        return False  # the create sees it gone, and says so
    if over is not None:
        fail(ctx, job, f"not sent: {over}")
    return over is not None


def not_sent(
    ctx: Context, job: Job, exc: Exception, on_account_refused: AccountRefused | None
) -> Upload:
    """A create known not made: the account refused (every submit pauses, the job waits)
    or the job did (through the retry policy)."""
    problem = account_problem(exc)
    if problem is None:
        record_error(ctx, job, exc, step=Step.UPLOAD)
        return Upload.NOT_SENT
    put_back(ctx, job, problem)
    if on_account_refused is not None:
        on_account_refused(problem)
    return Upload.PAUSED


def upload(
    ctx: Context,
    job: Job,
    *,
    on_account_refused: AccountRefused | None = None,
    premium: bool | None = None,
) -> Upload:
    """POST the create for a job already journaled as ``submitting``; a file over the plan
    caps (``premium``: the account's plan, None unknown) fails before anything is sent."""
    request = job.source.request
    if over_caps(ctx, job, premium):
        return Upload.NOT_SENT

    def progress(sent: int, total: int) -> None:
        ctx.check_abort()
        ctx.progress(job.id, "upload", {"sent": sent, "total": total})

    try:
        handle = open_as_seen(job)
        if handle is None:  # another file there now: the one checked is gone, none sent
            superseded(ctx, job)
            return Upload.NOT_SENT
        with handle:  # the version hashed and checked is the one sent
            result = ctx.client_for(job).create(
                sep_type=request.sep_type,
                output_format=request.output_format,
                options=request.options,
                file=handle,
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
        return not_sent(ctx, job, exc, on_account_refused)
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


def reconcile(
    ctx: Context, job: Job, *, on_account_refused: AccountRefused | None = None
) -> float | None:
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
        problem = account_problem(exc)
        if problem is not None:  # the history cannot be read for now: it stays submitting
            if on_account_refused is not None:
                on_account_refused(problem)
            return ACCOUNT_RECHECK_S
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
