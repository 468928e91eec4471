"""Tests of daemon.polling: the poll policy and the duration estimator (pure maths)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.polling import DurationEstimator, PollPolicy

# -- PollPolicy -------------------------------------------------------------------------------

STEADY = PollPolicy(jitter=0.0)


def delay(
    policy: PollPolicy = STEADY,
    *,
    status: str = "processing",
    queue_position: int | None = None,
    finished_chunks: int | None = None,
    all_chunks: int | None = None,
    elapsed_s: float = 0.0,
    expected_s: float | None = None,
    seed: int = 0,
) -> float:
    return policy.next_poll_delay(
        status=status,
        queue_position=queue_position,
        finished_chunks=finished_chunks,
        all_chunks=all_chunks,
        elapsed_s=elapsed_s,
        expected_s=expected_s,
        rng=random.Random(seed),
    )


@pytest.mark.parametrize(
    ("position", "expected"),
    [(None, 15.0), (0, 5.0), (1, 10.0), (3, 20.0), (7, 40.0), (11, 60.0), (500, 60.0)],
)
def test_waiting_slows_with_queue_position(position: int | None, expected: float) -> None:
    assert delay(status="waiting", queue_position=position) == pytest.approx(expected)


def test_waiting_delay_is_monotone_in_position() -> None:
    delays = [delay(status="waiting", queue_position=p) for p in range(40)]
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("elapsed_s", "expected_s", "expected"),
    [
        (0.0, 30.0, 24.0),  # first poll at 0.8 E
        (10.0, 30.0, 14.0),
        (23.0, 30.0, 1.0),  # 1 s left to the first poll (the floor is 1 s)
        (23.5, 30.0, 1.0),  # 0.5 s left: the floor
        (24.0, 30.0, 6.0),  # then every 0.2 E
        (30.0, 30.0, 6.0),
        (35.0, 30.0, 3.5),  # overdue: 0.1 x elapsed, faster than before
        (300.0, 30.0, 30.0),  # very late: backs off
        (5000.0, 30.0, 60.0),  # capped
        (0.0, 600.0, 60.0),  # a long job is still polled once a minute
        (0.0, None, 15.0),  # nothing known yet
        (42.0, 0.0, 15.0),
    ],
)
def test_processing_aims_near_expected_completion(
    elapsed_s: float, expected_s: float | None, expected: float
) -> None:
    assert delay(elapsed_s=elapsed_s, expected_s=expected_s) == pytest.approx(expected)


def test_processing_polls_faster_as_expected_completion_passes() -> None:
    before = delay(elapsed_s=24.0, expected_s=30.0)
    after = delay(elapsed_s=31.0, expected_s=30.0)
    assert after < before


@pytest.mark.parametrize(
    ("finished", "total", "elapsed_s", "expected"),
    [
        (5, 6, 25.0, 5.0),
        (2, 10, 20.0, 60.0),
        (3, 4, 3.0, 1.0),  # 1 s per chunk, one left
        (4, 4, 30.0, 1.0),  # all done: the floor
        (0, 4, 30.0, 10.0),
        (None, None, 30.0, 10.0),
    ],
)
def test_distributing_follows_the_chunk_rate(
    finished: int | None, total: int | None, elapsed_s: float, expected: float
) -> None:
    got = delay(
        status="distributing", finished_chunks=finished, all_chunks=total, elapsed_s=elapsed_s
    )
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "expected"), [("done", 4.0), ("merging", 4.0), ("mystery", 10.0)]
)
def test_other_statuses(status: str, expected: float) -> None:
    assert delay(status=status) == pytest.approx(expected)


def test_jitter_stays_within_bounds_and_spreads() -> None:
    policy = PollPolicy()
    got = [delay(policy, elapsed_s=0.0, expected_s=30.0, seed=seed) for seed in range(300)]
    assert all(24.0 * 0.85 <= d <= 24.0 * 1.15 for d in got)
    assert max(got) - min(got) > 24.0 * 0.25  # really jittered


def test_min_interval_is_an_absolute_floor() -> None:
    policy = PollPolicy(min_interval_s=3.0, processing_floor_s=0.5, jitter=0.5)
    got = [delay(policy, elapsed_s=29.9, expected_s=30.0, seed=s) for s in range(100)]
    assert min(got) >= 3.0


@settings(max_examples=50, deadline=None)
@given(
    status=st.sampled_from(["waiting", "processing", "distributing", "merging", "done", "x"]),
    position=st.none() | st.integers(-5, 10_000),
    finished=st.none() | st.integers(-1, 500),
    total=st.none() | st.integers(-1, 500),
    elapsed_s=st.floats(0, 1e6),
    expected_s=st.none() | st.floats(0, 1e5),
    seed=st.integers(0, 2**32),
)
def test_every_delay_is_within_floor_and_jittered_cap(
    status: str,
    position: int | None,
    finished: int | None,
    total: int | None,
    elapsed_s: float,
    expected_s: float | None,
    seed: int,
) -> None:
    policy = PollPolicy()
    got = delay(
        policy,
        status=status,
        queue_position=position,
        finished_chunks=finished,
        all_chunks=total,
        elapsed_s=elapsed_s,
        expected_s=expected_s,
        seed=seed,
    )
    assert policy.min_interval_s <= got <= policy.max_interval_s * (1 + policy.jitter)


# -- DurationEstimator ------------------------------------------------------------------------


def test_estimator_without_data_gives_the_prior() -> None:
    assert DurationEstimator().expected(40) is None
    assert DurationEstimator(prior_s=90.0).expected(40) == 90.0


def test_estimator_ewma_per_type_with_global_fallback() -> None:
    est = DurationEstimator(alpha=0.5, prior_s=90.0)
    est.observe(40, 30.0)
    assert est.expected(40) == 30.0  # the first observation seeds the average
    est.observe(40, 50.0)
    assert est.expected(40) == pytest.approx(40.0)
    est.observe(26, 100.0)
    assert est.expected(26) == 100.0
    assert est.expected(99) == pytest.approx(70.0)  # global EWMA: 30 -> 40 -> 70
    assert est.expected(40) == pytest.approx(40.0)


@pytest.mark.parametrize("bad", [0.0, -3.0, float("nan"), float("inf")])
def test_estimator_ignores_impossible_durations(bad: float) -> None:
    est = DurationEstimator()
    est.observe(40, bad)
    assert est.expected(40) is None


def test_estimator_rejects_bad_alpha() -> None:
    with pytest.raises(ValueError):
        DurationEstimator(alpha=0.0)
