"""Tests of the poll planner's paced mode (jobs wait for a slot) and the queue watch's hint,
on a simulated clock (``now`` passed in): one get each ``1 / supply`` seconds, on the job
likeliest done; a hint sends it to the jobs surely done among a few (a few at once when
calls are spare)."""

from __future__ import annotations

from daemon.poll_plan import Budget, JobView, PollPlanner

PLANNER = PollPlanner()
PRICED = PollPlanner(paced=False)
QUEUED = Budget(calls_left=40, cap=58, backlog=10)


def view(job_id: int, **changes: object) -> JobView:
    base: dict[str, object] = {
        "job_id": job_id,
        "started_at": 0.0,
        "expected_s": 30.0,
        "spread_s": 6.0,
    }
    base.update(changes)
    return JobView(**base)  # type: ignore[arg-type]


def test_with_a_backlog_one_job_is_polled_per_pace_not_every_likely_one() -> None:
    """Ten jobs all likely done: the price mode sends them all at once (its 0.8 rule) and
    starves the window later; the paced mode sends one, then one per ``1 / supply``."""
    views = [view(i, last_poll_at=30.0 + i / 10) for i in range(10)]
    assert len(PRICED.plan(views, QUEUED, 40.0).poll_now) == 10
    plan = PLANNER.plan(views, QUEUED, 40.0)
    assert len(plan.poll_now) == 1
    pace = 1.0 / PLANNER.supply(QUEUED)
    later = PLANNER.plan(
        [v for v in views if v.job_id not in plan.poll_now],
        Budget(calls_left=39, cap=58, backlog=10, last_sent_at=40.0),
        40.1,
    )
    assert later.poll_now == ()
    assert min(later.due_at.values()) >= 40.0 + pace - 1e-9


def test_the_paced_poll_goes_to_the_job_likeliest_done() -> None:
    views = [view(1, last_poll_at=20.0), view(2, last_poll_at=33.0), view(3, last_poll_at=27.0)]
    plan = PLANNER.plan(views, QUEUED, 34.5)
    likeliest = max(plan.probability, key=lambda j: plan.probability[j])
    assert plan.poll_now == (likeliest,) == (1,)


def test_a_job_not_yet_likely_done_is_left_alone_until_it_is() -> None:
    """Just started, a 30 ± 6 s job is under ``paced_min_p`` for a long while: no call is
    spent on it, and it is due when that chance is reached (well before its mean)."""
    plan = PLANNER.plan([view(1)], QUEUED, 1.0)
    assert plan.poll_now == ()
    assert 10.0 < plan.due_at[1] < 30.0


def test_a_done_hint_sends_the_next_poll_to_a_job_below_the_threshold() -> None:
    """The account says one of these jobs is done: the likeliest of them is polled now,
    although the model alone would not poll it yet."""
    views = [view(1, last_poll_at=12.0), view(2, last_poll_at=11.0)]
    assert PLANNER.plan(views, QUEUED, 12.5).poll_now == ()
    tight = Budget(calls_left=6, cap=58, backlog=10, done_hint=1, hint_jobs=frozenset({1, 2}))
    assert PLANNER.plan(views, tight, 12.5).poll_now == (2,)


def test_a_done_hint_with_calls_to_spare_looks_at_the_likeliest_few_at_once() -> None:
    """Above ``keep_fraction`` of the cap, a sure done is looked for in one round trip:
    up to ``hint_burst`` candidates at once, likeliest first, beside the pace."""
    views = [view(i, last_poll_at=10.0 - i / 10) for i in range(1, 6)]
    hint = frozenset(range(1, 6))
    spare = Budget(calls_left=40, cap=58, backlog=10, done_hint=1, hint_jobs=hint,
                   last_sent_at=12.4)  # fmt: skip
    plan = PLANNER.plan(views, spare, 12.5)
    assert len(plan.poll_now) == PLANNER.hint_burst
    ranked = sorted(hint, key=lambda j: -plan.probability[j])
    assert set(plan.poll_now) == set(ranked[: PLANNER.hint_burst])
    no_hint = Budget(calls_left=40, cap=58, backlog=10, last_sent_at=12.4)
    assert PLANNER.plan(views, no_hint, 12.5).poll_now == ()  # the pace holds without one


def test_a_hint_about_other_jobs_changes_nothing_and_never_beats_the_pace() -> None:
    views = [view(1, last_poll_at=12.0)]
    elsewhere = Budget(calls_left=40, cap=58, backlog=10, done_hint=1, hint_jobs=frozenset({9}))
    # (a hint about job 9 alone: job 1 is no candidate, even with calls to spare)
    assert PLANNER.plan(views, elsewhere, 12.5).poll_now == ()
    just_sent = Budget(  # no calls to spare above keep_fraction: no burst
        calls_left=6, cap=58, backlog=10, done_hint=1, hint_jobs=frozenset({1}), last_sent_at=12.4
    )
    plan = PLANNER.plan(views, just_sent, 12.5)
    assert plan.poll_now == ()
    assert plan.due_at[1] >= 12.4 + 1.0 / PLANNER.supply(just_sent) - 1e-9


def test_no_calls_left_means_no_poll_and_a_look_again_soon() -> None:
    views = [view(1, last_poll_at=33.0)]
    spent = Budget(calls_left=PLANNER.reserve, cap=58, backlog=10)
    plan = PLANNER.plan(views, spent, 40.0)
    assert plan.poll_now == ()
    assert 40.0 < plan.due_at[1] <= 40.0 + PLANNER.retry_s + 1e-9


def test_jobs_the_watch_shows_running_are_not_polled_until_the_fallback() -> None:
    """The likeliest job would be polled now; a fresh reading says it still runs: its get
    is saved until ``watch_fallback_s`` after its last answer (the watch may be wrong)."""
    views = [view(1, last_poll_at=33.0)]
    assert PLANNER.plan(views, QUEUED, 34.5).poll_now == (1,)
    running = Budget(calls_left=40, cap=58, backlog=10, known_running=frozenset({1}))
    plan = PLANNER.plan(views, running, 34.5)
    assert plan.poll_now == ()
    assert plan.due_at[1] >= 33.0 + PLANNER.watch_fallback_s


def test_ends_known_to_a_second_are_met_by_the_price_mode_even_with_a_backlog() -> None:
    """``Budget.paced`` False (the queue watch's rule: the held jobs' ends are certain):
    the paced mode's one-per-pace would hold short jobs' slots; the price mode runs."""
    views = [view(i, last_poll_at=30.0 + i / 10) for i in range(10)]
    certain = Budget(calls_left=40, cap=58, backlog=10, paced=False)
    assert PLANNER.plan(views, certain, 40.0).poll_now == PRICED.plan(views, QUEUED, 40.0).poll_now
    assert len(PLANNER.plan(views, certain, 40.0).poll_now) == 10
