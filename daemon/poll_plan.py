"""The poll planner: which queued jobs to ``get`` now, and when to look again. Pure.

Given every job at MVSEP (:class:`JobView`: its last answer, elapsed time, expected
duration and spread, last poll) and the ``get`` route's budget (:class:`Budget`), at ``now``
(monotonic seconds, passed in), :meth:`PollPlanner.plan` answers a :class:`Plan`.

The model
---------
A running job's duration is taken as normal (mean ``expected_s``, deviation ``spread_s``);
``distributing`` with chunk counts re-centres it on ``elapsed / finished x all``. Its hazard
``h`` (the chance per second that it ends now, given that it has not) sets its poll density
``sqrt(h / 2c)``: the rule that minimises detection lag + ``c`` x polls (Keller's optimal
inspection), ``c`` being the price of one poll in seconds of lag. The next poll is where
that density integrates to one since the last (:func:`next_poll_after`). So a job is left
alone while it certainly runs and polled densely where it most likely ends.

* **Slack budget**: ``c = price_slack_s`` (0.25 s), and near the expected end (from
  ``E - 1 sd`` to ``E + 2 sd``) never more than ``near_end_s`` (2 s) apart, never more
  often than ``policy.min_interval_s``.
* **Tight budget**: summed over jobs the demand is ``sum(sqrt(h)) / sqrt(2c)``; ``c`` is
  raised (closed form, :meth:`PollPlanner.price`) until it meets the supply
  (:meth:`PollPlanner.supply`): with no backlog the stock of calls (``calls_left -
  reserve``) over ``horizon_s``; with jobs still waiting for a slot, the sustained rate
  ``(cap - reserve) / window`` plus the stock above a cushion over one window (a burst now
  is a famine one window later: a place frees only ``window_s`` after its call). The calls
  go where the hazard is: each job needs as few gets as its spread allows.
* **Likely done**: a job whose chance of being done (given its last poll,
  :func:`done_probability`) has reached ``sure`` (0.8) is due whatever the price, so the
  route's places are not left unused while a result is probably waiting.
* **Order**: when more jobs are due than ``calls_left - reserve`` allows, the likeliest
  done go first; the rest look again after ``retry_s``.
* **Reserve**: ``reserve`` places of the route are never planned for polls, so a create or
  cancel sharing the route never waits behind them.
* **Paced** (jobs waiting for a slot, ``Budget.backlog``): a done job unseen holds a slot
  idle, so the calls go out at the supply's pace, one each ``1 / supply`` seconds after
  ``Budget.last_sent_at``, to the running job likeliest done given its last answer (once
  that chance reaches ``paced_min_p``): :meth:`PollPlanner.paced_plan`. The queue watch's
  hint (``done_hint`` of ``hint_jobs`` surely done) starts a search, one candidate at a
  time, likeliest first, beside the pace; the jobs it shows running (``known_running``)
  wait ``watch_fallback_s`` after their last answer, and only spare calls poll them.
* **Overdue**: past ``E + 2 sd`` the hazard is held (the model knows no better) and the
  interval is at least ``overdue_fraction x (e - E)``, up to ``policy.max_interval_s``.

The duration a done poll teaches is censored: it lies between the last not-done answer and
the done one. :func:`censored_mean` takes its expectation there under the model (the
midpoint of a narrow interval; near the model for a wide one), so late polls neither drag
the estimate up nor, with ``DurationEstimator.observe(within_s=)``, its spread to zero.

Other statuses (``waiting``, ``merging``, ``done`` without urls...) use the fixed delays of
:class:`~daemon.polling.PollPolicy` (``base_delay``). An unseen kind gets its expectation
from :class:`~daemon.polling.DurationEstimator` (a prior ``k x input duration``, ``k``
learned per ``sep_type``), never a flat wait.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

from daemon.polling import PollPolicy

RUNNING = frozenset({"processing", "distributing"})
"""Statuses whose end the duration model predicts."""


@dataclass(frozen=True, kw_only=True)
class JobView:
    """What the planner knows of one job at MVSEP (times are monotonic seconds)."""

    job_id: int
    started_at: float
    """When the create was answered (elapsed counts from here)."""
    status: str = "processing"
    """The last answer's status (before the first answer: ``processing``)."""
    queue_position: int | None = None
    finished_chunks: int | None = None
    all_chunks: int | None = None
    expected_s: float | None = None
    """Expected create -> done seconds (``DurationEstimator.expected``)."""
    spread_s: float | None = None
    """Its standard deviation (``DurationEstimator.spread``)."""
    last_poll_at: float | None = None
    """When the last answer (not done) arrived; ``None``: never polled."""
    running_at: float | None = None
    """When a reading of the account (the queue watch) last showed it running (with every
    other job it held): which of the jobs a later reading finds done is judged from here."""


@dataclass(frozen=True, kw_only=True)
class Budget:
    """The ``get`` route's budget at ``now``: places free now and the route's size."""

    calls_left: int
    """Grants possible now without waiting (``Pacer.headroom``)."""
    cap: int = 58
    """Places of the route usable at all (``Pacer.cap``)."""
    window_s: float = 60.0
    """Its window: a place frees this long after its call."""
    backlog: int = 0
    """Jobs waiting here for a slot: their polls are still to come, so the stock is spent
    at the sustained rate; with none, it may be spent at once."""
    last_sent_at: float | None = None
    """When the last poll was sent (monotonic; ``None``: none yet): the paced mode spaces
    its polls ``1 / supply`` apart from it."""
    done_hint: int = 0
    """At least this many of ``hint_jobs`` are done at MVSEP, unseen (the account's count
    of unfinished jobs: ``daemon.engine.queue_watch``): the paced mode's next poll goes to
    the likeliest of them, whatever its threshold (never faster than its pace)."""
    hint_jobs: frozenset[int] = frozenset()
    paced: bool = True
    """With a backlog, whether the paced mode may run: the held jobs' ends are uncertain
    (``queue_watch.worth_watching``). Ends known to a second or two are met by the price
    mode (one get each near its end: 300 jobs of 2 s took 497 s paced, 349 s priced)."""
    known_running: frozenset[int] = frozenset()
    """Jobs a fresh reading of the account showed all still running: the paced mode polls
    them only ``watch_fallback_s`` after their last answer."""


UNLIMITED = Budget(calls_left=10**6, cap=10**6)
"""A budget that never binds (no pacer)."""


@dataclass(frozen=True)
class Plan:
    """``poll_now``: jobs to poll at once, likeliest done first; ``due_at``: each job's next
    look (monotonic; ``<= now`` for those in ``poll_now``); ``price_s``: the price of a poll
    the plan used (seconds of lag); ``tight``: the slack price did not meet the supply;
    ``probability``: each job's chance of being done at ``now``."""

    now: float
    poll_now: tuple[int, ...]
    due_at: Mapping[int, float]
    price_s: float
    tight: bool
    probability: Mapping[int, float] = field(default_factory=dict)

    def due_in(self, job_id: int) -> float | None:
        at = self.due_at.get(job_id)
        return None if at is None else at - self.now


@dataclass(frozen=True, kw_only=True)
class PollPlanner:
    """Knobs of the planner (see the module docstring); ``policy`` gives the floor
    (``min_interval_s``), the cap (``max_interval_s``) and the non-running statuses."""

    policy: PollPolicy = field(default_factory=PollPolicy)
    price_slack_s: float = 0.25
    """The price of a poll, in seconds of detection lag, while the budget is slack."""
    near_end_s: float = 2.0
    """Slack budget: near the expected end, polls at most this far apart."""
    overdue_fraction: float = 0.1
    """Past ``E + 2 sd``: at least this fraction of the lateness between polls."""
    horizon_s: float = 6.0
    """No backlog: the stock of calls may be spent over this many seconds."""
    reserve: int = 2
    """Places of the route never planned for polls (creates, cancels)."""
    keep_fraction: float = 0.4
    """A backlog: below this fraction of the route's cap, polls slow down."""
    sure: float = 0.8
    """A job this likely done (given its last poll) is due, whatever its turn: the route's
    places are not left unused while a result is probably waiting."""
    retry_s: float = 1.0
    """A due job left out for want of budget looks again after this (at least the floor)."""
    paced: bool = True
    """With a backlog (jobs waiting for a slot), spend the budget at the supply's pace on
    the running job likeliest done (:meth:`paced_plan`) instead of by the price."""
    paced_min_p: float = 0.05
    """Paced mode: a running job is not polled before its chance of being done (since its
    last answer) reaches this: a call no job is likely to use stays in the window."""

    watch_fallback_s: float = 30.0
    """Paced mode: a job the queue watch shows running is still polled this long after its
    last answer (the watch is a hint, never the only way a done is seen)."""
    fallback_fraction: float = 0.75
    """Paced mode: a job the watch shows running gets its fallback poll only while more
    than this fraction of the route's cap is left (polling every held job every
    ``watch_fallback_s`` would take all of a tight window: 10 jobs, 30 a minute)."""

    def plan(self, jobs: Iterable[JobView], budget: Budget, now: float) -> Plan:
        views = list(jobs)
        if self.paced and budget.paced and budget.backlog > 0:
            return self.paced_plan(views, budget, now)
        usable = max(0, budget.calls_left - self.reserve)
        price = self.price(views, self.supply(budget), now)
        tight = price > self.price_slack_s
        due_at: dict[int, float] = {}
        prob: dict[int, float] = {}
        for view in views:
            last = view.started_at if view.last_poll_at is None else view.last_poll_at
            first = view.last_poll_at is None and view.status not in RUNNING
            delay = self.interval(view, price, slack=not tight)
            due_at[view.job_id] = now if first else last + delay
            prob[view.job_id] = done_probability(view, now)
        for view in views:  # a likely done goes before its turn (work-conserving)
            sure_at = _sure_at(view, self.sure)
            if sure_at is not None:
                last = view.started_at if view.last_poll_at is None else view.last_poll_at
                soonest = max(now, sure_at, last + self.floor_s(view))
                due_at[view.job_id] = min(due_at[view.job_id], soonest)
        due = sorted(
            (v.job_id for v in views if due_at[v.job_id] <= now),
            key=lambda j: (-prob[j], due_at[j], j),
        )
        chosen = tuple(due[:usable])
        later = min(self.policy.max_interval_s, max(self.retry_s, self.policy.min_interval_s))
        for job_id in due[usable:]:
            due_at[job_id] = now + later
        return Plan(now, chosen, due_at, price, tight, prob)

    def paced_plan(self, views: list[JobView], budget: Budget, now: float) -> Plan:
        """Jobs wait for a slot, so every second a done job goes unseen holds one idle: one
        running job is polled each ``1 / supply`` seconds (the pace the budget sustains,
        from ``budget.last_sent_at``), the one likeliest done given its last answer
        (an index policy: each call where it most likely frees a slot), once that chance
        reaches ``paced_min_p`` and its floor (or, overdue, its backoff) has passed. Other
        statuses keep their fixed delays.

        The queue watch's readings change two things. A job surely done among
        ``hint_jobs`` is looked for at once, whatever the pace: the likeliest candidate
        (:func:`_hinted`), then, if that one still runs, the next (the hint holds while a
        candidate's ``get`` is in flight, so the search is one call at a time: about two
        per done job). A job a fresh reading shows running (``known_running``) is only
        polled ``watch_fallback_s`` after its last answer, and then only from calls above
        ``fallback_fraction`` of the cap: a safety net that never takes a search's call."""
        supply = self.supply(budget)
        usable = max(0, budget.calls_left - self.reserve)
        pace_s = self.retry_s if supply <= 0 else 1.0 / supply  # none: look again later
        last_sent = budget.last_sent_at
        slot = now if last_sent is None else max(now, last_sent + pace_s)
        spare = usable - math.ceil(self.fallback_fraction * budget.cap) > 0
        due_at: dict[int, float] = {}
        prob: dict[int, float] = {}
        fixed: list[int] = []
        running: list[int] = []
        hinted: list[int] = []
        for view in views:
            prob[view.job_id] = done_probability(view, now)
            last = view.started_at if view.last_poll_at is None else view.last_poll_at
            if view.status not in RUNNING or _model(view)[0] is None:
                first = view.last_poll_at is None and view.status not in RUNNING
                delay = self.interval(view, self.price_slack_s, slack=True)
                due_at[view.job_id] = now if first else last + delay
                fixed.append(view.job_id)
                continue
            gap_at = last + self._gap_s(view)
            if budget.done_hint > 0 and view.job_id in budget.hint_jobs:
                due_at[view.job_id] = gap_at
                hinted.append(view.job_id)
                continue
            likely = self._likely_at(view)
            if view.job_id in budget.known_running:
                fallback_at = last + self.watch_fallback_s
                likely = max(likely, fallback_at if spare else now + self.watch_fallback_s)
            due_at[view.job_id] = max(slot, gap_at, likely)
            running.append(view.job_id)
        rank = _hinted(views, prob, running + hinted, budget, now)
        chosen = [j for j in fixed if due_at[j] <= now][:usable]
        search = sorted((j for j in hinted if due_at[j] <= now), key=lambda j: (-rank[j], j))
        if search and len(chosen) < usable:
            chosen.append(search[0])  # a slot is surely free: no waiting for the pace
        ready = sorted((j for j in running if due_at[j] <= now), key=lambda j: (-rank[j], j))
        if ready and len(chosen) < usable:
            chosen.append(ready[0])
        retry = now + max(pace_s, self.retry_s / 4)
        for job_id in list(due_at):
            if due_at[job_id] <= now and job_id not in chosen:
                due_at[job_id] = retry
        return Plan(now, tuple(chosen), due_at, self.price_slack_s, True, prob)

    def _gap_s(self, view: JobView) -> float:
        """Paced mode: the least gap after the last answer: the floor, and for an overdue
        job (past ``E + 2 sd``: the model is wrong about it) ``overdue_fraction`` of its
        lateness, up to ``policy.max_interval_s``."""
        gap = self.floor_s(view)
        mean, sd = _model(view)
        e0 = _elapsed(view, None)
        if mean is not None and e0 > mean + 2 * sd:
            gap = max(gap, self.overdue_fraction * (e0 - mean))
        return min(self.policy.max_interval_s, gap)

    def _likely_at(self, view: JobView) -> float:
        """When ``view``'s chance of being done since its last answer reaches
        ``paced_min_p`` (overdue: at once)."""
        at = _sure_at(view, self.paced_min_p)
        return -math.inf if at is None else at

    def supply(self, budget: Budget) -> float:
        """Polls per second the budget affords. No backlog: the stock over ``horizon_s``.
        A backlog: the sustained rate ``(cap - reserve) / window`` plus the stock above
        ``keep`` over one window; below ``keep``, proportionally less (a burst now is a
        famine one window later: a place frees only ``window_s`` after its call)."""
        usable = max(0, budget.calls_left - self.reserve)
        if budget.backlog <= 0:
            return usable / self.horizon_s
        sustained = max(0, budget.cap - self.reserve) / budget.window_s
        keep = max(1.0, self.keep_fraction * budget.cap)
        floor = sustained if usable > 0 else 0.0
        return floor + max(0.0, usable - keep) / budget.window_s

    def price(self, views: list[JobView], supply: float, now: float) -> float:
        """The price of a poll (seconds of lag) at which the jobs' polls fit ``supply``.

        A running job is polled at the rate ``sqrt(h / 2c)`` (``h``: its hazard, the
        chance per second that it ends now, given it has not; ``c``: the price): the rule
        that minimises lag + ``c`` x polls (Keller's inspection rule). Summed over jobs
        the demand is ``sum(sqrt(h)) / sqrt(2c)``, so the price that meets ``supply``
        comes in closed form; other statuses ask their fixed ``1 / delay``."""
        fixed = roots = 0.0
        for view in views:
            mean, sd = _model(view)
            if view.status not in RUNNING or mean is None:
                fixed += 1.0 / self.interval(view, self.price_slack_s, slack=True)
            else:
                roots += math.sqrt(_hazard(_elapsed(view, now), mean, sd))
        rest = supply - fixed
        if rest <= 1e-9:
            return _PRICE_MAX_S
        return min(_PRICE_MAX_S, max(self.price_slack_s, roots * roots / (2.0 * rest * rest)))

    def floor_s(self, view: JobView) -> float:
        """The shortest gap between two polls of ``view``: ``policy.min_interval_s``, and
        for a running job at least ``policy.processing_floor_s``."""
        floor = self.policy.min_interval_s
        if view.status in RUNNING:
            floor = max(floor, self.policy.processing_floor_s)
        return min(self.policy.max_interval_s, floor)

    def interval(self, view: JobView, price: float, *, slack: bool) -> float:
        """Seconds from ``view``'s last poll (or start) to its next, at ``price``."""
        cap, floor = self.policy.max_interval_s, self.floor_s(view)
        if view.status not in RUNNING:
            return self.policy.base_delay(
                status=view.status,
                queue_position=view.queue_position,
                finished_chunks=view.finished_chunks,
                all_chunks=view.all_chunks,
                elapsed_s=_elapsed(view, None),
                expected_s=view.expected_s,
            )
        mean, sd = _model(view)
        if mean is None:
            unknown = self.near_end_s if slack else self.policy.processing_unknown_s
            return min(cap, max(floor, unknown))
        e0 = _elapsed(view, None)
        delta = next_poll_after(mean, sd, e0, price, cap)
        if e0 > mean + 2 * sd:
            delta = max(delta, self.overdue_fraction * (e0 - mean))
        elif slack and e0 + delta >= mean - sd:
            delta = min(delta, max(self.near_end_s, mean - sd - e0))
        return min(cap, max(floor, delta))


_PRICE_MAX_S = 1e6


def _sure_at(view: JobView, sure: float) -> float | None:
    """When the chance that ``view`` is done (given its last poll) reaches ``sure``."""
    if view.status not in RUNNING:
        return None
    mean, sd = _model(view)
    if mean is None or _elapsed(view, None) > mean + 2 * sd:
        return None  # overdue: the model is wrong about it; the overdue backoff holds
    f0 = _cdf(_elapsed(view, None), mean, sd)
    target = min(1.0 - 1e-9, f0 + sure * (1.0 - f0))
    return view.started_at + max(0.0, NormalDist(mean, sd).inv_cdf(target))


def _hinted(
    views: list[JobView],
    prob: Mapping[int, float],
    running: list[int],
    budget: Budget,
    now: float,
) -> dict[int, float]:
    """Each running job's chance of being done, raised for the jobs ``budget.done_hint``
    of which are surely done: given that, job ``j`` is done with about ``k p_j / sum p``,
    ``p_j`` its chance of having ended since it was last known running (its last answer
    or an account reading that showed it running, ``JobView.running_at``): a job polled
    long ago but seen running by the watch a second ago is not the likely one."""
    rank = {j: prob[j] for j in running}
    among = [j for j in running if j in budget.hint_jobs]
    if budget.done_hint <= 0 or not among:
        return rank
    by_id = {v.job_id: v for v in views}
    since = {j: done_probability(by_id[j], now, since=by_id[j].running_at) for j in among}
    total = sum(since.values())
    for j in among:
        share = since[j] / total if total > 0 else 1.0 / len(among)
        rank[j] = max(rank[j], min(1.0, budget.done_hint * share))
    return rank


def _hazard(elapsed: float, mean: float, sd: float) -> float:
    """Chance per second of ending at ``elapsed`` given it has not, under N(mean, sd); held
    at its value at ``mean + 2 sd`` beyond (a job that late: the model knows no better)."""
    z = (min(elapsed, mean + 2 * sd) - mean) / sd
    survive = 0.5 * math.erfc(z / math.sqrt(2.0))
    return math.exp(-z * z / 2) / (math.sqrt(2 * math.pi) * sd * max(survive, 1e-12))


def next_poll_after(mean: float, sd: float, e0: float, price: float, cap: float) -> float:
    """Seconds after elapsed ``e0`` to the next poll: where the poll density
    ``sqrt(h / 2 price)`` integrates to one (at most ``cap``)."""
    t, acc = e0, 0.0
    for _ in range(400):
        rate = math.sqrt(_hazard(t, mean, sd) / (2.0 * price))
        step = min(0.25 / rate if rate > 0 else cap, sd / 4, e0 + cap - t)
        if acc + rate * step >= 1.0:
            return t + (1.0 - acc) / rate - e0
        acc += rate * step
        t += step
        if t >= e0 + cap:
            break
    return min(cap, t - e0)


def _elapsed(view: JobView, now: float | None) -> float:
    at = now if now is not None else view.last_poll_at
    return 0.0 if at is None else max(0.0, at - view.started_at)


def _model(view: JobView) -> tuple[float | None, float]:
    """(mean, sd) of the job's create -> done seconds, chunks taken into account."""
    mean, sd = view.expected_s, view.spread_s
    done, total = view.finished_chunks, view.all_chunks
    if view.status == "distributing" and done and total and view.last_poll_at is not None:
        elapsed = _elapsed(view, None)
        if elapsed > 0:
            left = elapsed / done * max(0, total - done)
            return elapsed + left, max(0.2 * left, 0.5)
    if mean is None or mean <= 0:
        return None, 0.0
    return mean, max(sd if sd is not None else 0.5 * mean, 0.1 * mean, 0.05)


def _cdf(x: float, mean: float, sd: float) -> float:
    return 0.5 * (1.0 + math.erf((x - mean) / (sd * math.sqrt(2.0))))


def done_probability(view: JobView, now: float, *, since: float | None = None) -> float:
    """Chance that a ``get`` at ``now`` sees ``view`` done, given its last poll did not
    (and, with ``since``, that it still ran then, if that is later)."""
    if view.status not in RUNNING:
        return 0.0 if view.status == "waiting" else 0.5
    mean, sd = _model(view)
    if mean is None:
        return 0.5
    e0, e = _elapsed(view, None), _elapsed(view, now)
    if since is not None:
        e0 = max(e0, min(e, since - view.started_at))
    survive = 1.0 - _cdf(e0, mean, sd)
    if survive < 1e-6:  # far overdue: the model says nothing; treat as likely
        return 1.0
    return max(0.0, min(1.0, (_cdf(e, mean, sd) - _cdf(e0, mean, sd)) / survive))


def censored_mean(mean: float | None, sd: float | None, low: float, high: float) -> float:
    """A duration known only to lie in ``(low, high]``: its expectation under N(mean, sd)
    (the midpoint when there is no model or the model puts no weight there). Near the
    midpoint for a narrow interval; for a wide one (one late poll saw done) it stays near
    the model instead of drifting to the poll time."""
    low, high = max(0.0, low), max(low, high)
    if mean is None or sd is None or sd <= 0 or high - low <= 0:
        return (low + high) / 2
    a, b = (low - mean) / sd, (high - mean) / sd
    mass = _cdf(b, 0.0, 1.0) - _cdf(a, 0.0, 1.0)
    if mass < 1e-9:
        return (low + high) / 2
    pdf = (math.exp(-a * a / 2) - math.exp(-b * b / 2)) / math.sqrt(2 * math.pi)
    return min(high, max(low, mean + sd * pdf / mass))


__all__ = [
    "RUNNING",
    "UNLIMITED",
    "Budget",
    "JobView",
    "Plan",
    "PollPlanner",
    "censored_mean",
    "done_probability",
    "next_poll_after",
]
