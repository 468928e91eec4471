"""Tests of daemon.poll_plan: the pure poll planner, on a simulated clock (``now`` passed in)."""

from __future__ import annotations

import math

import pytest

from daemon.poll_plan import (
    UNLIMITED,
    Budget,
    JobView,
    PollPlanner,
    censored_mean,
    done_probability,
    next_poll_after,
)
from daemon.polling import DurationEstimator, PollPolicy

PLANNER = PollPlanner()
PRICED = PollPlanner(paced=False)  # the price alone, backlog or not (the paced mode: below)
SLACK = Budget(calls_left=58, cap=58)


def view(job_id: int = 1, **changes: object) -> JobView:
    base: dict[str, object] = {
        "job_id": job_id,
        "started_at": 0.0,
        "expected_s": 10.0,
        "spread_s": 3.0,
    }
    base.update(changes)
    return JobView(**base)  # type: ignore[arg-type]


def simulate(
    planner: PollPlanner,
    durations: list[float],
    *,
    calls_left: int,
    expected_s: float,
    spread_s: float,
    backlog: int = 0,
) -> tuple[list[int], list[float]]:
    """Drive the planner on a simulated clock: at each look, poll what it says; a poll sees
    done once the job's duration has passed. Polls spend the budget (no refill: the run is
    shorter than the window). Returns the polls per job and each job's detection lag."""
    now, left = 0.0, calls_left
    last: dict[int, float | None] = dict.fromkeys(range(len(durations)))
    seen: dict[int, float] = {}
    polls = [0] * len(durations)
    for _ in range(10_000):
        views = [
            JobView(
                job_id=i,
                started_at=0.0,
                expected_s=expected_s,
                spread_s=spread_s,
                last_poll_at=last[i],
            )
            for i in range(len(durations))
            if i not in seen
        ]
        if not views:
            break
        plan = planner.plan(views, Budget(calls_left=left, cap=58, backlog=backlog), now)
        for job_id in plan.poll_now:
            polls[job_id] += 1
            left -= 1
            if now >= durations[job_id]:
                seen[job_id] = now
            else:
                last[job_id] = now
        left_out = [plan.due_at[v.job_id] for v in views if v.job_id not in seen]
        if left_out:
            now = max(now, min(left_out))
    assert len(seen) == len(durations), "some job was never seen done"
    return polls, [seen[i] - d for i, d in enumerate(durations)]


# -- slack budget -----------------------------------------------------------------------------


def test_slack_budget_polls_every_one_to_two_seconds_near_the_end() -> None:
    """A job inside its likely window (E ± sd) is polled at most near_end_s apart, never
    more often than min_interval_s."""
    for elapsed in (7.0, 9.0, 10.0, 11.0, 13.0):
        v = view(last_poll_at=elapsed)
        plan = PLANNER.plan([v], SLACK, elapsed)
        gap = plan.due_at[1] - elapsed
        assert PLANNER.policy.min_interval_s <= gap <= PLANNER.near_end_s, (elapsed, gap)
        assert not plan.tight


def test_slack_budget_waits_while_the_job_certainly_runs() -> None:
    """Far before its expected end a job is not polled every second: the first poll of a
    60-s job comes well after its start, yet before its likely window."""
    plan = PLANNER.plan([view(expected_s=60.0, spread_s=6.0)], SLACK, 0.0)
    assert 20.0 < plan.due_at[1] < 60.0 - 6.0


def test_a_simulated_run_with_a_slack_budget_sees_each_done_within_two_seconds() -> None:
    durations = [10.0 + d for d in (-3.0, -1.5, 0.0, 0.7, 2.2, 3.0)]
    polls, lags = simulate(PLANNER, durations, calls_left=58, expected_s=10.0, spread_s=2.0)
    assert max(lags) <= PLANNER.near_end_s + 1e-9
    assert sum(polls) <= 58 - PLANNER.reserve


# -- tight budget -----------------------------------------------------------------------------


def test_a_tight_budget_raises_the_price_and_spaces_the_polls() -> None:
    views = [view(i, last_poll_at=8.0) for i in range(10)]
    slack = PRICED.plan(views, SLACK, 8.0)
    tight = PRICED.plan(views, Budget(calls_left=6, cap=58, backlog=20), 8.0)
    assert not slack.tight and tight.tight
    assert tight.price_s > slack.price_s
    assert all(tight.due_at[i] > slack.due_at[i] for i in range(10))


def test_a_tight_budget_needs_fewer_gets_per_job_than_a_slack_one() -> None:
    durations = [10.0 + d for d in (-4.0, -2.5, -1.0, 0.0, 0.5, 1.5, 3.0, 4.5)]
    args = {"expected_s": 10.0, "spread_s": 3.0}
    slack_polls, slack_lags = simulate(PRICED, durations, calls_left=58, **args)
    tight_polls, tight_lags = simulate(PRICED, durations, calls_left=16, backlog=50, **args)
    assert sum(tight_polls) < sum(slack_polls)
    assert sum(tight_polls) <= 16 - PRICED.reserve
    assert max(slack_lags) <= max(tight_lags)


def test_a_backlog_spends_the_stock_slower_than_a_lone_batch() -> None:
    """With jobs still to come, a burst now is a famine a window later: the supply is
    about the sustained rate; with none to come the stock may go at once."""
    alone = PLANNER.supply(Budget(calls_left=58, cap=58))
    queued = PLANNER.supply(Budget(calls_left=58, cap=58, backlog=40))
    sustained = (58 - PLANNER.reserve) / 60.0
    assert queued < alone
    assert sustained <= queued < 2 * sustained
    assert PLANNER.supply(Budget(calls_left=PLANNER.reserve, cap=58, backlog=40)) == 0.0


# -- order and reserve ------------------------------------------------------------------------


def test_when_few_calls_are_left_the_likeliest_done_go_first() -> None:
    early = view(1, expected_s=30.0, spread_s=3.0, last_poll_at=None)  # 20 s in: unlikely
    late = view(2, expected_s=12.0, spread_s=3.0, last_poll_at=None)  # 20 s in: surely done
    middle = view(3, expected_s=16.0, spread_s=3.0, last_poll_at=None)  # likely done
    now = 20.0
    chances = {v.job_id: done_probability(v, now) for v in (early, late, middle)}
    assert chances[2] > chances[3] > chances[1]
    plan = PLANNER.plan([early, late, middle], Budget(calls_left=PLANNER.reserve + 1), now)
    assert plan.poll_now == (2,)
    assert plan.due_at[3] == pytest.approx(now + PLANNER.retry_s)  # due, left for lack of calls


def test_the_reserve_is_never_planned_for_polls() -> None:
    due = [view(i, expected_s=5.0, spread_s=1.0) for i in range(4)]
    at_reserve = PLANNER.plan(due, Budget(calls_left=PLANNER.reserve), 20.0)
    assert at_reserve.poll_now == ()
    one_more = PLANNER.plan(due, Budget(calls_left=PLANNER.reserve + 1), 20.0)
    assert len(one_more.poll_now) == 1
    assert len(PLANNER.plan(due, UNLIMITED, 20.0).poll_now) == 4


def test_a_likely_done_job_is_due_before_its_turn() -> None:
    """Even at a high price, a job past the point where it is 80 % likely done is due."""
    v = view(expected_s=10.0, spread_s=1.0, last_poll_at=None)
    many = [view(i, expected_s=10.0, spread_s=1.0, last_poll_at=None) for i in range(2, 40)]
    plan = PLANNER.plan([v, *many], Budget(calls_left=3, cap=58, backlog=100), 11.5)
    assert plan.tight
    assert plan.due_at[1] <= 11.5


# -- an unseen kind ---------------------------------------------------------------------------


def test_an_unseen_kind_starts_from_the_input_duration_not_a_flat_15_s() -> None:
    estimator = DurationEstimator()
    short = estimator.expected(48, input_s=8.0)
    long = estimator.expected(48, input_s=240.0)
    assert short == pytest.approx(4.0) and long == pytest.approx(120.0)
    assert estimator.spread(48, input_s=8.0) == pytest.approx(2.0)
    first = {}
    for name, input_s in (("short", 8.0), ("long", 240.0)):
        v = view(
            expected_s=estimator.expected(48, input_s=input_s),
            spread_s=estimator.spread(48, input_s=input_s),
        )
        first[name] = PLANNER.plan([v], SLACK, 0.0).due_at[1]
    assert first["short"] < 4.0 < PollPolicy().processing_unknown_s
    assert first["long"] > 15.0


def test_the_ratio_to_the_input_is_learned_per_sep_type() -> None:
    estimator = DurationEstimator()
    estimator.observe(48, 30.0, input_s=60.0)  # k = 0.5 s per input second
    estimator.observe(20, 60.0, input_s=30.0)  # k = 2
    assert estimator.expected(48, input_s=20.0) == pytest.approx(10.0)
    assert estimator.expected(20, input_s=20.0) == pytest.approx(40.0)
    assert estimator.expected(7, input_s=20.0) is not None  # the global ratio, not the prior
    assert estimator.expected(48) == pytest.approx(30.0)  # no input: the seconds


def test_the_spread_neither_collapses_nor_grows_from_late_polls() -> None:
    estimator = DurationEstimator()
    for _ in range(30):
        estimator.observe(48, 2.0, input_s=20.0, within_s=0.0)
    sd = estimator.spread(48, input_s=20.0)
    assert sd is not None and sd >= 0.05 * 2.0 - 1e-9
    before = estimator.spread(48, input_s=20.0)
    estimator.observe(48, 2.0, input_s=20.0, within_s=40.0)  # one very late poll
    after = estimator.spread(48, input_s=20.0)
    assert before is not None and after is not None and after <= 1.3 * before


def test_two_close_first_durations_do_not_make_the_spread_small() -> None:
    """In a first wave the short jobs end first: 20.6 and 21.9 s of jobs 30 +- 10 s. Taken
    at their word (a spread of 1.6 s) every other job looked done by 23 s, each was polled
    at once, and the queue watch (worth it only for uncertain ends) stopped."""
    estimator = DurationEstimator()
    estimator.observe(48, 20.6, input_s=20.0)
    estimator.observe(48, 21.9, input_s=20.0)
    sd = estimator.spread(48, input_s=20.0)
    assert sd is not None and sd > 5.0
    for _ in range(40):  # many alike: the learned spread wins in the end
        estimator.observe(48, 21.0, input_s=20.0)
    sd = estimator.spread(48, input_s=20.0)
    assert sd is not None and sd < 1.5


# -- the model ---------------------------------------------------------------------------------


def test_censored_mean_is_the_midpoint_of_a_narrow_interval_and_stays_near_the_model() -> None:
    assert censored_mean(10.0, 3.0, 9.0, 10.0) == pytest.approx(9.5, abs=0.05)
    assert censored_mean(None, None, 4.0, 8.0) == 6.0
    wide = censored_mean(10.0, 3.0, 0.0, 40.0)  # one poll, very late: says little
    assert wide == pytest.approx(10.0, abs=0.1)
    assert 0.0 < censored_mean(10.0, 3.0, 0.0, 6.0) < 6.0


def test_next_poll_comes_sooner_as_the_price_falls_and_the_end_nears() -> None:
    cheap = next_poll_after(10.0, 2.0, 9.0, 0.25, 60.0)
    dear = next_poll_after(10.0, 2.0, 9.0, 10.0, 60.0)
    early = next_poll_after(10.0, 2.0, 2.0, 0.25, 60.0)
    assert 0 < cheap < dear <= 60.0
    assert early > cheap
    assert math.isfinite(next_poll_after(10.0, 2.0, 50.0, 0.25, 60.0))  # far overdue


def test_other_statuses_use_the_policy_delays() -> None:
    waiting = view(status="waiting", queue_position=3, last_poll_at=5.0)
    plan = PLANNER.plan([waiting], SLACK, 5.0)
    assert plan.due_at[1] == pytest.approx(5.0 + 5.0 + 5.0 * 3)
    assert done_probability(waiting, 100.0) == 0.0
    restarted = view(status="waiting", last_poll_at=None)  # a restart: polled at once
    assert PLANNER.plan([restarted], SLACK, 7.0).due_at[1] == 7.0


def test_an_overdue_job_is_not_polled_in_a_busy_loop() -> None:
    """A job far past what its prior predicted (a 0.25-s guess for a 4-s job) is polled at
    the running floor and the overdue backoff, not at once after every answer."""
    planner = PollPlanner(policy=PollPolicy(min_interval_s=0.02, processing_floor_s=0.5))
    late = view(expected_s=0.25, spread_s=0.125, last_poll_at=3.0)
    plan = planner.plan([late], SLACK, 3.0)
    assert plan.due_at[1] - 3.0 >= 0.5 - 1e-9
    assert plan.poll_now == ()
