"""PURE job state machine: events, ``transition()``, what a cancel means. No I/O.

The states and the job record are in ``daemon.records``, the events in ``daemon.events``
(both re-exported here); where a job goes after an error is ``daemon.engine.retry``; each
state's work is a module of ``daemon.engine`` (``prepare``, ``submit``, ``poll``,
``deliver``, ``dispose``).

A job moves through::

    ready ──submit_intent──▶ submitting ──submitted──▶ queued ──result_ready──▶ downloading
      ▲  ╲                      │  ▲                       │                       │
      │   ╲duplicate────────────┼──┼───────────────────────┼──────────────────────▶│
      │                         │  │                       │                       ▼
      ├──reconciled_absent──────┘  │                       │                     filed
      ├──expired (resubmit)────────┼───────────────────────┴───────────────────────┤
      │                            │                                               │
    retry_wait ◀──defer── ready / submitting / downloading          any ──fail──▶ failed
    retry_wait ──resume──▶ the state it was deferred from            some ──cancel─▶ cancelled
    held ◀──held── ready (prepared, over a credit limit) ──released──▶ ready

Each state's work is one module of ``daemon/engine/`` (``scheduler.py`` hands jobs to them)::

    ready         prepare.py    sniff, hash, dedup; then scheduler.py claims a slot
    submitting    submit.py     the create (after the intent is journaled); reconcile
    queued        poll.py       get + next poll delay; cancel at MVSEP
    downloading   deliver.py    stage the stems, plan paths (outputs.py), file, sidecar
    retry_wait    scheduler.py  resume when due; retry.py decides who waits and how long
    held          credit_guard.py  over max_credits_per_day / keep_credits_at_least; released
                                   when the limit allows (next local day, credits bought)
    filed/failed  dispose.py    archive/delete/keep the input; failed folder

``filed``, ``failed`` and ``cancelled`` are terminal: every event raises
:class:`~daemon.errors.IllegalTransition` there. A job holds an MVSEP hash at most once
per submission: ``submit_intent`` and ``submitted`` require that no hash is held, and only
``expired`` (resubmit of a result MVSEP deleted) clears it.

Times are wall-clock seconds (``time.time()``) passed in by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from daemon.clock import Clock
from daemon.errors import IllegalTransition
from daemon.events import (
    CancelDeclined,
    Cancelled,
    CancelRequested,
    Deferred,
    Duplicate,
    Event,
    Expired,
    Failed,
    Filed,
    Held,
    OutputsPlanned,
    PollFailed,
    Prepared,
    ReconciledAbsent,
    Released,
    ResultReady,
    Resumed,
    StatusSeen,
    SubmitIntent,
    Submitted,
)
from daemon.records import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    AfterSuccess,
    CancelProcessing,
    Job,
    JobRequest,
    JobState,
    OnCollision,
    ResultFile,
    SourceFile,
    result_file_from_json,
    result_file_to_json,
)

__all__ = [
    "ACTIVE_STATES",
    "ALLOWED",
    "TERMINAL_STATES",
    "AfterSuccess",
    "CancelDeclined",
    "CancelProcessing",
    "CancelRequested",
    "Cancelled",
    "Clock",
    "Deferred",
    "Duplicate",
    "Event",
    "Expired",
    "Failed",
    "Filed",
    "Held",
    "Job",
    "JobRequest",
    "JobState",
    "OnCollision",
    "OutputsPlanned",
    "PollFailed",
    "Prepared",
    "ReconciledAbsent",
    "Released",
    "ResultFile",
    "ResultReady",
    "Resumed",
    "SourceFile",
    "StatusSeen",
    "SubmitIntent",
    "Submitted",
    "cancel_event",
    "describe",
    "result_file_from_json",
    "result_file_to_json",
    "transition",
]

_S = JobState
_NON_TERMINAL = frozenset(ACTIVE_STATES)

# event kind -> states it may arrive in
ALLOWED: dict[str, frozenset[JobState]] = {
    "prepared": frozenset({_S.READY}),
    "submit_intent": frozenset({_S.READY}),
    "submitted": frozenset({_S.SUBMITTING}),
    "reconciled_absent": frozenset({_S.SUBMITTING}),
    "status": frozenset({_S.QUEUED}),
    "poll_failed": frozenset({_S.QUEUED}),
    "result_ready": frozenset({_S.QUEUED}),
    "duplicate": frozenset({_S.READY}),
    "outputs_planned": frozenset({_S.DOWNLOADING}),
    "filed": frozenset({_S.DOWNLOADING}),
    "deferred": frozenset({_S.READY, _S.SUBMITTING, _S.DOWNLOADING}),
    "resumed": frozenset({_S.RETRY_WAIT}),
    "held": frozenset({_S.READY, _S.HELD}),  # again in held: the reason changed
    "released": frozenset({_S.HELD}),
    "expired": frozenset({_S.QUEUED, _S.DOWNLOADING}),
    "cancel_requested": frozenset({_S.SUBMITTING, _S.QUEUED, _S.RETRY_WAIT}),
    "cancel_declined": frozenset({_S.SUBMITTING, _S.QUEUED, _S.RETRY_WAIT}),
    # from submitting only by the submit step itself, before a byte is sent (superseded)
    "cancelled": frozenset(
        {_S.READY, _S.HELD, _S.SUBMITTING, _S.RETRY_WAIT, _S.QUEUED, _S.DOWNLOADING}
    ),
    "failed": _NON_TERMINAL,
}


def describe(event: Event) -> str:
    """A short human reason for the event log."""
    for name in ("reason", "error", "hash", "status", "nonce"):
        value = getattr(event, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def transition(job: Job, event: Event, *, now: float) -> Job:
    """Apply ``event`` to ``job`` and return the new job. Raises ``IllegalTransition``."""
    allowed = ALLOWED[event.kind]
    if job.state not in allowed:
        raise IllegalTransition(
            f"job {job.id}: event {event.kind!r} is not allowed in state {job.state.value!r}"
        )
    new = _HANDLERS[event.kind](job, event, now)
    return dataclasses.replace(new, updated_at=now)


def _require(cond: bool, job: Job, event: Event, why: str) -> None:
    if not cond:
        raise IllegalTransition(f"job {job.id}: event {event.kind!r} refused: {why}")


def _progress(job: Job, state: JobState, **changes: object) -> Job:
    """A step forward: clears the retry streak."""
    fields: dict[str, object] = {
        "attempts": 0,
        "first_error_at": None,
        "next_attempt_at": None,
        "last_error": None,
        "resume_state": None,
    }
    fields.update(changes)
    return dataclasses.replace(job, state=state, **fields)  # type: ignore[arg-type]


def _on_prepared(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Prepared)
    return dataclasses.replace(job, sha256=ev.sha256, estimated_credits=ev.estimated_credits)


def _on_submit_intent(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, SubmitIntent)
    _require(job.mvsep_hash is None, job, ev, "it already has an MVSEP hash")
    _require(job.sha256 is not None, job, ev, "it was not prepared")
    _require(job.cancel_requested is None, job, ev, "a cancel was requested")
    return dataclasses.replace(
        job, state=_S.SUBMITTING, nonce=ev.nonce, intent_at=now, base_url=ev.base_url
    )


def _on_submitted(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Submitted)
    _require(job.mvsep_hash is None, job, ev, "it already has an MVSEP hash")
    return _progress(
        job, _S.QUEUED, mvsep_hash=ev.hash, mvsep_status=None, used_credits=ev.used_credits
    )


def _on_reconciled_absent(job: Job, ev: Event, now: float) -> Job:
    # Nothing was created: a pending cancel request can now simply be honoured.
    state = _S.READY if job.cancel_requested is None else _S.CANCELLED
    return dataclasses.replace(job, state=state, nonce=None, intent_at=None, base_url=None)


def _on_status(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, StatusSeen)
    streak_over = {"attempts": 0, "first_error_at": None, "next_attempt_at": None}
    return dataclasses.replace(job, mvsep_status=ev.status, last_error=None, **streak_over)  # type: ignore[arg-type]


def _on_poll_failed(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, PollFailed)
    return dataclasses.replace(
        job,
        attempts=job.attempts + 1,
        first_error_at=job.first_error_at if job.first_error_at is not None else now,
        next_attempt_at=ev.due_at,
        last_error=ev.error,
    )


def _on_result_ready(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, ResultReady)
    _require(bool(ev.files), job, ev, "a result without files is still pending")
    _require(all(f.url for f in ev.files), job, ev, "a result file has no url yet")
    return _progress(job, _S.DOWNLOADING, mvsep_status="done", result_files=ev.files)


def _on_duplicate(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Duplicate)
    _require(job.mvsep_hash is None, job, ev, "it was already submitted")
    _require(all(f.local for f in ev.files), job, ev, "a duplicate copies local files")
    return _progress(
        job, _S.DOWNLOADING, duplicate_of=ev.of_job, result_files=ev.files, sha256=ev.sha256
    )


def _on_outputs_planned(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, OutputsPlanned)
    _require(job.planned_outputs is None, job, ev, "outputs were already planned")
    return dataclasses.replace(job, planned_outputs=ev.paths)


def _on_filed(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Filed)
    _require(job.planned_outputs is not None, job, ev, "outputs were not planned first")
    return _progress(job, _S.FILED, outputs=ev.outputs)


def _on_deferred(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Deferred)
    resume = ev.resume or job.state
    if resume is _S.READY:
        # From submitting this means "known not created": the nonce is spent.
        extra: dict[str, object] = {"nonce": None, "intent_at": None, "base_url": None}
    else:
        _require(resume is job.state, job, ev, "it can only resume ready or where it was")
        extra = {}
    return dataclasses.replace(
        job,
        state=_S.RETRY_WAIT,
        resume_state=resume,
        attempts=job.attempts + (0 if ev.recheck else 1),
        first_error_at=job.first_error_at if job.first_error_at is not None or ev.recheck else now,
        next_attempt_at=ev.due_at,
        last_error=ev.error,
        **extra,  # type: ignore[arg-type]
    )


def _on_resumed(job: Job, ev: Event, now: float) -> Job:
    assert job.resume_state is not None
    return dataclasses.replace(job, state=job.resume_state, resume_state=None, next_attempt_at=None)


def _on_held(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Held)
    _require(job.sha256 is not None and job.mvsep_hash is None, job, ev, "it is not prepared")
    return dataclasses.replace(job, state=_S.HELD, last_error=ev.reason)


def _on_released(job: Job, ev: Event, now: float) -> Job:
    return dataclasses.replace(job, state=_S.READY, last_error=None)


def _on_expired(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Expired)
    return _progress(
        job,
        _S.READY,
        mvsep_hash=None,
        mvsep_status=None,
        nonce=None,
        intent_at=None,
        base_url=None,
        result_files=(),
        planned_outputs=None,
        last_error=ev.reason,
    )


def _on_cancel_requested(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, CancelRequested)
    return dataclasses.replace(job, cancel_requested=ev.reason)


def _on_cancel_declined(job: Job, ev: Event, now: float) -> Job:
    return dataclasses.replace(job, cancel_requested=None)


def _on_cancelled(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Cancelled)
    _require(
        not (job.state is _S.RETRY_WAIT and job.resume_state is _S.SUBMITTING),
        job,
        ev,
        "its submit outcome is unknown; reconcile first",
    )
    return dataclasses.replace(job, state=_S.CANCELLED, last_error=ev.reason, resume_state=None)


def _on_failed(job: Job, ev: Event, now: float) -> Job:
    assert isinstance(ev, Failed)
    return dataclasses.replace(job, state=_S.FAILED, last_error=ev.reason, resume_state=None)


_HANDLERS: dict[str, Callable[[Job, Event, float], Job]] = {
    "prepared": _on_prepared,
    "submit_intent": _on_submit_intent,
    "submitted": _on_submitted,
    "reconciled_absent": _on_reconciled_absent,
    "status": _on_status,
    "poll_failed": _on_poll_failed,
    "result_ready": _on_result_ready,
    "duplicate": _on_duplicate,
    "outputs_planned": _on_outputs_planned,
    "filed": _on_filed,
    "deferred": _on_deferred,
    "resumed": _on_resumed,
    "held": _on_held,
    "released": _on_released,
    "expired": _on_expired,
    "cancel_requested": _on_cancel_requested,
    "cancel_declined": _on_cancel_declined,
    "cancelled": _on_cancelled,
    "failed": _on_failed,
}


def cancel_event(job: Job, reason: str, *, processing: CancelProcessing) -> Event | None:
    """What a cancel request means for ``job`` now (``None``: nothing to do).

    Before submit: cancelled at once. Hash unknown yet or at MVSEP: remember the request (the
    engine calls MVSEP's cancel while waiting, or applies ``processing`` once it started).
    Downloading: ``discard`` cancels, ``keep`` finishes normally.
    """
    if job.state.is_terminal or job.cancel_requested is not None:
        return None
    if job.state in (_S.READY, _S.HELD):  # nothing sent
        return Cancelled(reason)
    if job.state is _S.RETRY_WAIT:
        if job.resume_state is _S.SUBMITTING:
            return CancelRequested(reason)
        if job.resume_state is _S.DOWNLOADING and processing == "keep":
            return None
        return Cancelled(reason)
    if job.state is _S.DOWNLOADING:
        return Cancelled(reason) if processing == "discard" else None
    return CancelRequested(reason)
