"""Tests of the poll planner's paced mode (jobs wait for a slot) and the queue watch's hint,
on a simulated clock (``now`` passed in): one get each ``1 / supply`` seconds, on the job
likeliest done; a hint starts a search among the jobs one of which is surely done (one
candidate at a time, beside the pace); jobs the watch shows running wait for a fallback
poll from spare calls."""

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


def test_a_done_hint_starts_a_search_one_candidate_at_a_time_beside_the_pace() -> None:
    """A slot is surely free: the likeliest candidate is polled at once, though a poll was
    just sent (the pace would wait), and only one (the hint holds while its get is in
    flight: the engine leaves a polling job out of the hint, so the next plan goes on)."""
    views = [view(i, last_poll_at=10.0 - i / 10) for i in range(1, 6)]
    hint = frozenset(range(1, 6))
    budget = Budget(calls_left=40, cap=58, backlog=10, done_hint=1, hint_jobs=hint,
                    last_sent_at=12.4)  # fmt: skip
    plan = PLANNER.plan(views, budget, 12.5)
    ranked = sorted(hint, key=lambda j: (-plan.probability[j], j))
    assert plan.poll_now == (ranked[0],)
    no_hint = Budget(calls_left=40, cap=58, backlog=10, last_sent_at=12.4)
    assert PLANNER.plan(views, no_hint, 12.5).poll_now == ()  # the pace holds without one


def test_the_search_judges_a_candidate_from_when_the_watch_last_saw_it_running() -> None:
    """Job 1 was last polled long ago, so on its own answers it is the likelier done; but a
    reading of the account at 12.0 showed it running, and job 2 was not in that reading:
    job 2 is the likely one, and is looked at first."""
    views = [view(1, last_poll_at=5.0), view(2, last_poll_at=10.0)]
    hint = Budget(calls_left=40, cap=58, backlog=10, done_hint=1, hint_jobs=frozenset({1, 2}))
    assert PLANNER.plan(views, hint, 12.5).poll_now == (1,)
    seen = [view(1, last_poll_at=5.0, running_at=12.0), view(2, last_poll_at=10.0)]
    assert PLANNER.plan(seen, hint, 12.5).poll_now == (2,)


def test_a_hint_about_other_jobs_changes_nothing_and_a_search_needs_a_call() -> None:
    views = [view(1, last_poll_at=12.0)]
    elsewhere = Budget(calls_left=40, cap=58, backlog=10, done_hint=1, hint_jobs=frozenset({9}))
    # (a hint about job 9 alone: job 1 is no candidate, even with calls to spare)
    assert PLANNER.plan(views, elsewhere, 12.5).poll_now == ()
    spent = Budget(calls_left=PLANNER.reserve, cap=58, backlog=10, done_hint=1,
                   hint_jobs=frozenset({1}))  # fmt: skip
    plan = PLANNER.plan(views, spent, 12.5)
    assert plan.poll_now == ()  # the reserve is never spent on polls, a search's included
    assert 12.5 < plan.due_at[1] <= 12.5 + PLANNER.retry_s + 1e-9


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
    running = Budget(calls_left=50, cap=58, backlog=10, known_running=frozenset({1}))
    plan = PLANNER.plan(views, running, 34.5)
    assert plan.poll_now == ()
    assert plan.due_at[1] >= 33.0 + PLANNER.watch_fallback_s
    at_fallback = 33.0 + PLANNER.watch_fallback_s
    assert PLANNER.plan(views, running, at_fallback).poll_now == (1,)


def test_the_fallback_poll_of_a_job_shown_running_takes_only_spare_calls() -> None:
    """Below ``fallback_fraction`` of the cap the calls are kept for searches: a held job
    the watch shows running is not polled even past its fallback (ten such jobs every
    ``watch_fallback_s`` took a tight window: done jobs waited 15 s for a call)."""
    views = [view(1, last_poll_at=33.0)]
    at_fallback = 33.0 + PLANNER.watch_fallback_s + 1.0
    left = int(PLANNER.fallback_fraction * 58)  # not above the fraction
    tight = Budget(calls_left=left, cap=58, backlog=10, known_running=frozenset({1}))
    plan = PLANNER.plan(views, tight, at_fallback)
    assert plan.poll_now == ()
    assert plan.due_at[1] > at_fallback


def test_ends_known_to_a_second_are_met_by_the_price_mode_even_with_a_backlog() -> None:
    """``Budget.paced`` False (the queue watch's rule: the held jobs' ends are certain):
    the paced mode's one-per-pace would hold short jobs' slots; the price mode runs."""
    views = [view(i, last_poll_at=30.0 + i / 10) for i in range(10)]
    certain = Budget(calls_left=40, cap=58, backlog=10, paced=False)
    assert PLANNER.plan(views, certain, 40.0).poll_now == PRICED.plan(views, QUEUED, 40.0).poll_now
    assert len(PLANNER.plan(views, certain, 40.0).poll_now) == 10
