"""PURE: where a job goes after an error. One function, :func:`decide`, and the backoff maths.

Every step of the engine catches what its I/O raised and asks :func:`decide` what it means
for the job: the answer (:class:`Decision`) names the next state, the reason recorded and,
for a retry, the delay. The step then records it (``daemon.engine.dispose.apply``). The
table in ``docs/ARCHITECTURE.md`` ("where does a job go after X?") is this function.

* :class:`~daemon.errors.Stopping`: nothing changes; the journaled state is where the job
  resumes on the next start.
* :class:`~daemon.errors.OutcomeUnknown` from the create: stays ``submitting``; reconciled
  through the history, never sent again blindly.
* :class:`~daemon.errors.ApiNotFound` while downloading: the result expired at MVSEP:
  ``ready`` again if ``resubmit_expired``, else ``failed``. While polling, one ``not_found``
  proves nothing (MVSEP answers it now and then for a job it has): the poll retries in
  place like a retry-later error; the job is expired only when :func:`expiry_check_due`
  and MVSEP's history agree (``daemon.engine.poll``).
* :class:`~daemon.errors.WillNeverWork` (401, 400, ``success: false``): ``failed``.
* :class:`~daemon.errors.ApiSlotsFull`: ``retry_wait`` for ``slots_full_retry_s``; never
  counts towards the deadline (a busy account is not a failing job).
* Other :class:`~daemon.errors.RetryLater` (429, 5xx, timeouts, dropped connections) and
  ``OSError`` (disk full, a share gone mid-write): ``retry_wait`` with capped exponential
  backoff + jitter (at least a 429's ``Retry-After``) until the streak is older than
  ``retry_deadline_s``: then ``failed``. A poll retries in place (the job stays ``queued``).
* Anything else is a bug: ``failed`` with "unexpected error".

No I/O, no clock: ``now`` and ``rng`` are passed in.
"""

from __future__ import annotations

import enum
import errno
import math
from dataclasses import dataclass
from typing import Protocol

from daemon.errors import (
    ApiAuthError,
    ApiNotFound,
    ApiRateLimited,
    ApiSlotsFull,
    OutcomeUnknown,
    RetryLater,
    Stopping,
    WillNeverWork,
)
from daemon.jobs import JobState

__all__ = [
    "Decision",
    "ExpiryPolicy",
    "RetryPolicy",
    "Rng",
    "Step",
    "backoff_delay_s",
    "deadline_passed",
    "decide",
    "describe_error",
    "expiry_check_due",
]


class Rng(Protocol):
    def random(self) -> float: ...


class Step(enum.StrEnum):
    """The engine step that raised (what the error means depends on it)."""

    PREPARE = "prepare"
    UPLOAD = "upload"
    RECONCILE = "reconcile"
    POLL = "poll"
    DOWNLOAD = "download"


# The state each step resumes in after a retry_wait (None: the state it is in).
_RESUME: dict[Step, JobState | None] = {
    Step.PREPARE: None,
    Step.UPLOAD: JobState.READY,  # known not created: the nonce is spent, submit anew
    Step.RECONCILE: JobState.SUBMITTING,
    Step.POLL: JobState.QUEUED,
    Step.DOWNLOAD: None,
}


@dataclass(frozen=True)
class RetryPolicy:
    """The retry settings (``[engine] retry_*``, see ``daemon.config``)."""

    retry_base_s: float
    retry_cap_s: float
    retry_deadline_s: float
    slots_full_retry_s: float
    resubmit_expired: bool = False


@dataclass(frozen=True)
class ExpiryPolicy:
    """When a job whose ``get`` answers ``not_found`` may be taken as expired at MVSEP.

    The real service keeps results about 72 hours, and answers a stray ``not_found`` for a
    job it has (seen two seconds after a create). So: never before ``min_age_s`` after the
    create, and only after ``confirmations`` ``not_found`` answers with at least ``span_s``
    between the first and the latest; then MVSEP's history must agree (the job is absent,
    ``job_exists`` false or ``time_left`` <= 0). Until then the poll retries with backoff."""

    min_age_s: float = 3600.0
    confirmations: int = 3
    span_s: float = 300.0


def expiry_check_due(
    policy: ExpiryPolicy,
    *,
    created_at: float,
    first_not_found_at: float,
    not_found_count: int,
    now: float,
) -> bool:
    """Whether a ``not_found`` streak is long and old enough to ask the history (wall clock)."""
    return (
        not_found_count >= policy.confirmations
        and now - first_not_found_at >= policy.span_s
        and now - created_at >= policy.min_age_s
    )


@dataclass(frozen=True)
class Decision:
    """What an error means for a job.

    ``state``: the next state (``None``: unchanged, resumes on restart). ``delay_s``: for
    ``retry_wait`` (and a poll retried in place) the seconds until the next attempt;
    ``resume``: the state a ``retry_wait`` resumes."""

    state: JobState | None
    reason: str
    delay_s: float = 0.0
    resume: JobState | None = None


def backoff_delay_s(attempt: int, *, base_s: float, cap_s: float, rng: Rng) -> float:
    """Capped exponential backoff with "equal jitter": in [d/2, d], d = min(cap, base·2^(n-1))."""
    exponent = max(0, attempt - 1)
    ceiling = cap_s if exponent >= 63 else min(cap_s, base_s * math.pow(2.0, exponent))
    return ceiling / 2 + rng.random() * ceiling / 2


def deadline_passed(first_error_at: float | None, *, now: float, deadline_s: float) -> bool:
    """True when the retry streak that began at ``first_error_at`` lasted ``deadline_s``."""
    started = first_error_at if first_error_at is not None else now
    return now - started >= deadline_s


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full: {exc}"
    return f"{type(exc).__name__}: {exc}"


def decide(
    exc: BaseException,
    *,
    step: Step,
    attempts: int,
    first_error_at: float | None,
    now: float,
    policy: RetryPolicy,
    rng: Rng,
) -> Decision:
    """Where a job goes after ``exc`` was raised in ``step``.

    ``attempts`` and ``first_error_at`` describe the retry streak so far, as journaled (for
    a poll: its failed polls, ``poll_failed``); ``now`` is wall-clock seconds.
    """
    text = describe_error(exc)
    if isinstance(exc, Stopping):
        return Decision(None, f"stopped: {exc}; resumes on restart")
    if isinstance(exc, OutcomeUnknown) and step is Step.UPLOAD:
        return Decision(JobState.SUBMITTING, f"create outcome unknown, reconcile: {text}")
    if isinstance(exc, ApiNotFound) and step is Step.DOWNLOAD:
        state = JobState.READY if policy.resubmit_expired else JobState.FAILED
        return Decision(state, f"the result expired at MVSEP: {text}")
    if isinstance(exc, ApiNotFound) and step is Step.POLL:  # not proof: see ExpiryPolicy
        return _retry(exc, text, step, attempts, first_error_at, now, policy, rng)
    if isinstance(exc, ApiAuthError) and step is Step.POLL:  # the account's, not the job's:
        delay = backoff_delay_s(  # polled again, never failed for it (issue 9 item 5)
            attempts + 1, base_s=policy.retry_base_s, cap_s=policy.retry_cap_s, rng=rng
        )
        return Decision(JobState.QUEUED, text, delay_s=delay, resume=_RESUME[step])
    if isinstance(exc, WillNeverWork):
        return Decision(JobState.FAILED, text)
    if not isinstance(exc, RetryLater | OSError):
        return Decision(JobState.FAILED, f"unexpected error: {text}")
    return _retry(exc, text, step, attempts, first_error_at, now, policy, rng)


def _retry(
    exc: RetryLater | ApiNotFound | OSError,
    text: str,
    step: Step,
    attempts: int,
    first_error_at: float | None,
    now: float,
    policy: RetryPolicy,
    rng: Rng,
) -> Decision:
    resume = _RESUME[step]
    state = JobState.QUEUED if step is Step.POLL else JobState.RETRY_WAIT
    if isinstance(exc, ApiSlotsFull):
        return Decision(state, text, delay_s=policy.slots_full_retry_s, resume=resume)
    if first_error_at is not None and deadline_passed(
        first_error_at, now=now, deadline_s=policy.retry_deadline_s
    ):
        return Decision(JobState.FAILED, f"still failing after {attempts} attempts: {text}")
    delay = backoff_delay_s(
        attempts + 1, base_s=policy.retry_base_s, cap_s=policy.retry_cap_s, rng=rng
    )
    if isinstance(exc, ApiRateLimited) and exc.retry_after_s:
        delay = max(delay, exc.retry_after_s)
    return Decision(state, text, delay_s=delay, resume=resume)
