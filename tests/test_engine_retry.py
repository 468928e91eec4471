"""The one error policy (``daemon.engine.retry.decide``): every error class of
``daemon.errors`` and the streaks that end a job, as a table. Pure: ``now`` and the rng are
passed in."""

from __future__ import annotations

import errno
import inspect
import random

import pytest

from daemon import errors
from daemon.engine.prepare import estimate_credits
from daemon.engine.retry import (
    Decision,
    ExpiryPolicy,
    RetryPolicy,
    Step,
    backoff_delay_s,
    deadline_passed,
    decide,
    expiry_check_due,
)
from daemon.jobs import JobState

S = JobState
POLICY = RetryPolicy(
    retry_base_s=5.0, retry_cap_s=600.0, retry_deadline_s=3600.0, slots_full_retry_s=20.0
)
NOW = 10_000.0


class Fixed:
    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def run(
    exc: BaseException,
    step: Step = Step.UPLOAD,
    *,
    attempts: int = 0,
    first_error_at: float | None = None,
    policy: RetryPolicy = POLICY,
) -> Decision:
    return decide(
        exc,
        step=step,
        attempts=attempts,
        first_error_at=first_error_at,
        now=NOW,
        policy=policy,
        rng=Fixed(),
    )


ENOSPC = OSError(errno.ENOSPC, "No space left on device")

# (error, step, next state, resume, delay in s with rng=1.0 (None: not checked), reason word)
TABLE: list[tuple[BaseException, Step, JobState | None, JobState | None, float | None, str]] = [
    (errors.ApiTimeout("t"), Step.UPLOAD, S.RETRY_WAIT, S.READY, 5.0, "ApiTimeout"),
    (errors.ApiConnectionError("c"), Step.RECONCILE, S.RETRY_WAIT, S.SUBMITTING, 5.0, "c"),
    (errors.ApiServerError("500", status_code=500), Step.UPLOAD, S.RETRY_WAIT, S.READY, 5.0, "5"),
    (errors.ApiServerError("502"), Step.POLL, S.QUEUED, S.QUEUED, 5.0, "ApiServerError"),
    (errors.ApiRateLimited("429", retry_after_s=90), Step.UPLOAD, S.RETRY_WAIT, S.READY, 90, ""),
    (errors.ApiRateLimited("429"), Step.DOWNLOAD, S.RETRY_WAIT, None, 5.0, "ApiRateLimited"),
    (errors.ApiSlotsFull("full"), Step.UPLOAD, S.RETRY_WAIT, S.READY, 20.0, "ApiSlotsFull"),
    (errors.RetryLater("later"), Step.PREPARE, S.RETRY_WAIT, None, 5.0, "RetryLater"),
    (errors.ApiAuthError("401"), Step.UPLOAD, S.FAILED, None, None, "ApiAuthError"),
    (errors.ApiRejected("bad"), Step.UPLOAD, S.FAILED, None, None, "ApiRejected"),
    (errors.WillNeverWork("no"), Step.DOWNLOAD, S.FAILED, None, None, "WillNeverWork"),
    (errors.ApiNotFound("gone"), Step.POLL, S.QUEUED, S.QUEUED, 5.0, "ApiNotFound"),
    (errors.ApiNotFound("gone"), Step.DOWNLOAD, S.FAILED, None, None, "expired"),
    (errors.ApiNotFound("gone"), Step.RECONCILE, S.FAILED, None, None, "ApiNotFound"),
    (errors.OutcomeUnknown("lost"), Step.UPLOAD, S.SUBMITTING, None, None, "reconcile"),
    (errors.OutcomeUnknown("lost"), Step.POLL, S.FAILED, None, None, "unexpected"),
    (errors.ApiError("odd"), Step.POLL, S.FAILED, None, None, "unexpected"),
    (errors.Stopping("stop"), Step.UPLOAD, None, None, None, "restart"),
    (errors.Stopping("stop"), Step.DOWNLOAD, None, None, None, "restart"),
    (ENOSPC, Step.DOWNLOAD, S.RETRY_WAIT, None, 5.0, "disk full"),
    (ENOSPC, Step.PREPARE, S.RETRY_WAIT, None, 5.0, "disk full"),
    (PermissionError(13, "denied"), Step.DOWNLOAD, S.RETRY_WAIT, None, 5.0, "PermissionError"),
    (errors.IllegalTransition("bug"), Step.POLL, S.FAILED, None, None, "unexpected"),
    (errors.ConfigError("bad config"), Step.PREPARE, S.FAILED, None, None, "unexpected"),
    (errors.JournalError("db"), Step.UPLOAD, S.FAILED, None, None, "unexpected"),
    (errors.JournalLockedError("db"), Step.UPLOAD, S.FAILED, None, None, "unexpected"),
    (errors.JournalVersionError("db"), Step.UPLOAD, S.FAILED, None, None, "unexpected"),
    (errors.JournalGoneError("db"), Step.POLL, S.FAILED, None, None, "unexpected"),
    (errors.MvsepWatchError("base"), Step.UPLOAD, S.FAILED, None, None, "unexpected"),
    (ValueError("a bug"), Step.DOWNLOAD, S.FAILED, None, None, "unexpected"),
]


@pytest.mark.parametrize(
    ("exc", "step", "state", "resume", "delay", "word"),
    TABLE,
    ids=[f"{type(row[0]).__name__}-{row[1].value}" for row in TABLE],
)
def test_where_a_job_goes_after_an_error(
    exc: BaseException,
    step: Step,
    state: JobState | None,
    resume: JobState | None,
    delay: float | None,
    word: str,
) -> None:
    decision = run(exc, step)
    assert decision.state is state, decision
    assert decision.resume is resume, decision
    if delay is not None:
        assert decision.delay_s == pytest.approx(delay)
    assert word in decision.reason


def test_the_table_covers_every_error_class() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.MvsepWatchError)
    }
    assert defined - {type(row[0]) for row in TABLE} == set()


def test_resubmit_expired_sends_an_expired_result_again() -> None:
    policy = RetryPolicy(**{**POLICY.__dict__, "resubmit_expired": True})
    assert run(errors.ApiNotFound("gone"), Step.DOWNLOAD, policy=policy).state is S.READY


def test_a_not_found_poll_is_no_proof_of_expiry_even_with_resubmit() -> None:
    """One ``not_found`` on ``get`` retries in place (never a second create at once); the
    poll step decides expiry with ExpiryPolicy and the history."""
    policy = RetryPolicy(**{**POLICY.__dict__, "resubmit_expired": True})
    decision = run(errors.ApiNotFound("gone"), Step.POLL, policy=policy)
    assert decision.state is S.QUEUED and decision.delay_s == pytest.approx(5.0)
    late = run(errors.ApiNotFound("gone"), Step.POLL, attempts=50, first_error_at=NOW - 3600.0)
    assert late.state is S.FAILED and "still failing" in late.reason


EXPIRY = ExpiryPolicy(min_age_s=3600.0, confirmations=3, span_s=300.0)


@pytest.mark.parametrize(
    ("age_s", "count", "span_s", "due"),
    [
        (2.0, 1, 0.0, False),  # the report: one not_found two seconds after the create
        (2.0, 9, 400.0, False),  # consistent, but far too young
        (7200.0, 1, 0.0, False),  # old, but a single answer
        (7200.0, 3, 299.0, False),  # three answers in a burst
        (7200.0, 2, 900.0, False),  # a long span, two answers
        (3600.0, 3, 300.0, True),
        (72 * 3600.0, 7, 1000.0, True),
    ],
)
def test_expiry_is_checked_only_for_an_old_consistent_not_found_streak(
    age_s: float, count: int, span_s: float, due: bool
) -> None:
    assert (
        expiry_check_due(
            EXPIRY,
            created_at=NOW - age_s,
            first_not_found_at=NOW - span_s,
            not_found_count=count,
            now=NOW,
        )
        is due
    )


def test_retry_later_streak_waits_then_fails_at_the_deadline() -> None:
    """RetryLater → retry_wait (growing waits) → deadline → failed."""
    exc = errors.ApiServerError("503", status_code=503)
    first = NOW - 100.0
    delays = [run(exc, attempts=n, first_error_at=first).delay_s for n in range(12)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]  # the (n+1)th try: base·2^n, rng=1.0
    assert delays[-1] == 600.0  # capped
    assert run(exc, attempts=3, first_error_at=NOW - 3599.0).state is S.RETRY_WAIT
    failed = run(exc, attempts=40, first_error_at=NOW - 3600.0)
    assert failed.state is S.FAILED and "still failing after 40 attempts" in failed.reason


def test_a_poll_that_keeps_failing_fails_the_job_at_the_deadline() -> None:
    exc = errors.ApiConnectionError("reset")
    assert run(exc, Step.POLL, attempts=5, first_error_at=NOW - 10.0).state is S.QUEUED
    assert run(exc, Step.POLL, attempts=90, first_error_at=NOW - 3600.0).state is S.FAILED


def test_slots_full_never_reaches_the_deadline() -> None:
    late = run(errors.ApiSlotsFull("full"), attempts=500, first_error_at=NOW - 10 * 86400.0)
    assert late.state is S.RETRY_WAIT and late.delay_s == 20.0


def test_disk_full_while_filing_waits_then_fails_at_the_deadline() -> None:
    waiting = run(ENOSPC, Step.DOWNLOAD, attempts=2, first_error_at=NOW - 60.0)
    assert waiting.state is S.RETRY_WAIT and waiting.reason.startswith("disk full")
    assert run(ENOSPC, Step.DOWNLOAD, attempts=9, first_error_at=NOW - 7200.0).state is S.FAILED


@pytest.mark.parametrize(
    ("attempt", "rng_value", "expected"),
    [
        (1, 0.0, 2.5),
        (1, 1.0, 5.0),
        (2, 0.0, 5.0),
        (3, 1.0, 20.0),
        (30, 1.0, 600.0),
        (999, 0.0, 300.0),
    ],
)
def test_backoff(attempt: int, rng_value: float, expected: float) -> None:
    assert backoff_delay_s(attempt, base_s=5.0, cap_s=600.0, rng=Fixed(rng_value)) == pytest.approx(
        expected
    )


def test_backoff_jitter_stays_in_bounds() -> None:
    rng = random.Random(1)
    delays = {backoff_delay_s(4, base_s=1.0, cap_s=100.0, rng=rng) for _ in range(100)}
    assert min(delays) >= 4.0 and max(delays) <= 8.0 and len(delays) > 50


def test_deadline_and_credits() -> None:
    assert not deadline_passed(100.0, now=150.0, deadline_s=60.0)
    assert deadline_passed(100.0, now=160.0, deadline_s=60.0)
    assert not deadline_passed(None, now=160.0, deadline_s=60.0)
    assert estimate_credits(30.0, 1.0) == 1.0
    assert estimate_credits(600.0, 1.5) == 15.0
    assert estimate_credits(None, 1.0) is None
