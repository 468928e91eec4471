"""Discrete-event simulation of pacing and polling: no network, no sleeping.

Issue 12's scenarios, each run with two daemon sides in the same run on the same seeds:

* **baseline**: the per-job timers before the planner, ``PollPolicy`` (its 2-s floor for
  running jobs) with a ``DurationEstimator`` fed the elapsed time at seen-done, no prior
  (an unseen kind is polled every 15 s);
* **planner**: ``daemon.poll_plan.PollPlanner`` over all jobs at MVSEP and the ``get``
  route's budget, the estimator's prior ``k x input duration`` and its censored updates, as
  ``daemon.engine.poll.Polls`` runs it (with a backlog its paced mode, spaced from the last
  poll sent). The engine's queue watch (``daemon.engine.queue_watch``: the account route's
  ``current_queue``) is not simulated: its effect is measured by ``bench_throughput.py``.

The server counts each route on its own, as MVSEP and the emulator do (``daemon.pacing``): a
Laravel-style fixed window per route (opened by its first hit, 60 s; past the limit a 429
with Retry-After, not counted), 60 a minute on ``create`` and on ``get``. Both sides use the
real ``Pacer`` (strict priority then FIFO, like ``Pacer.acquire``). A job holds its slot
from its create's grant until the daemon sees it done; the upload takes ``upload_s``.
Downloads and filing are outside the model.

Printed per scenario and side: wall time (first create -> last done seen) and its ratio to
the physical limit (the most of: the longest job with its upload; jobs x (mean + upload) /
slots; the busiest route's calls at one per job / its limit), slot use at MVSEP (create ->
MVSEP done, over slots x wall), detection lag p50/p95 (MVSEP done -> the get that saw it),
calls per job, 429s, the most jobs in flight at once and the longest wait of a create for
the pacer. The issue's own bound ``jobs x 2 calls / 60 per min`` is printed beside.

Usage: ``python bench/bench_pacing.py [--seeds 10] [--only SUBSTRING]``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import platform
import random
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.pacing import Pacer  # noqa: E402
from daemon.poll_plan import Budget, JobView, PollPlanner, censored_mean  # noqa: E402
from daemon.polling import DurationEstimator, PollPolicy  # noqa: E402

LIMIT = 60  # the pacer's limit for a route it has not heard from yet
ROUTE_LIMITS = {"create": 60, "get": 60}  # X-RateLimit-Limit per route (the emulator's)
WINDOW_S = 60.0
SEP_TYPE = 40


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    slots: int
    mean_s: float
    spread_s: float  # processing is uniform in mean ± spread
    input_s: float = 20.0  # the input's duration (the planner's prior)
    upload_s: float = 1.0


SCENARIOS = (
    Scenario("10 files / 10 ± 3 s, premium", 10, 10, 10.0, 3.0),
    Scenario("50 files / 30 ± 10 s, 10 slots", 50, 10, 30.0, 10.0, input_s=60.0),
    Scenario("300 files / 2 s, 10 slots", 300, 10, 2.0, 0.2),
    Scenario("free account: 10 files / 20 ± 5 s", 10, 1, 20.0, 5.0),
)


@dataclass
class Job:
    index: int
    duration_s: float
    create_start: float = -1.0
    created_at: float = 0.0  # the create's answer reached the daemon
    mvsep_done: float = 0.0
    seen_done: float = -1.0
    last_poll_at: float | None = None  # the last not-done answer
    polls: int = 0
    polling: bool = False


class FixedWindow:
    """Laravel's throttle of one route: a 60-s window opened by the first hit, 429 past
    the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.window_start = -1e18
        self.count = 0
        self.refused = 0

    def hit(self, t: float) -> tuple[bool, int, float | None]:
        if t >= self.window_start + WINDOW_S:
            self.window_start, self.count = t, 0
        if self.count >= self.limit:
            self.refused += 1
            return False, 0, self.window_start + WINDOW_S - t
        self.count += 1
        return True, self.limit - self.count, None


@dataclass
class Result:
    wall_s: float
    physical_s: float
    at_mvsep: float
    lags: list[float]
    calls_per_job: float
    refused: int
    max_in_flight: int
    max_create_wait_s: float


class Simulation:
    """One scenario, one seed, one daemon side (``planner`` or the baseline)."""

    def __init__(self, sc: Scenario, seed: int, *, planner: bool) -> None:
        self.sc = sc
        self.rng = random.Random(seed)
        lo, hi = sc.mean_s - sc.spread_s, sc.mean_s + sc.spread_s
        self.jobs = [Job(i, self.rng.uniform(lo, hi)) for i in range(sc.jobs)]
        self.use_planner = planner
        # the baseline keeps the policy as it was (a 2-s floor for running jobs)
        self.policy = PollPolicy() if planner else PollPolicy(processing_floor_s=2.0)
        self.planner = PollPlanner(policy=self.policy)
        self.pacer = Pacer(limit=LIMIT, window_s=WINDOW_S)
        self.estimator = DurationEstimator()
        self.server = {name: FixedWindow(limit) for name, limit in ROUTE_LIMITS.items()}
        self.events: list[tuple[float, int, Callable[[float], None]]] = []
        self.pending: list[tuple[int, int, int, str, Callable[[float], None]]] = []
        self.seq = itertools.count()
        self.backlog: Iterator[Job] = iter(self.jobs)
        self.create_waits: list[float] = []
        self.replan_at = float("inf")
        self.last_sent: float | None = None  # the last poll sent (the planner's pace)

    def at(self, t: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self.events, (t, next(self.seq), action))

    def run(self) -> Result:
        for _ in range(self.sc.slots):
            self.next_create(0.0)
        while self.events:
            t, _, action = heapq.heappop(self.events)
            action(t)
        return self.result()

    # -- requests through the pacer -----------------------------------------------------------

    def request(self, t: float, kind: str, job: Job, on_grant: Callable[[float], None]) -> None:
        priority = 1 if kind == "get" else 0
        heapq.heappush(self.pending, (priority, next(self.seq), job.index, kind, on_grant))
        self.pump(t)

    def pump(self, t: float) -> None:
        """Grant waiting requests in (priority, arrival) order, as ``Pacer.acquire`` does."""
        while self.pending:
            _, _, index, kind, on_grant = self.pending[0]
            wait = self.pacer.try_acquire(kind, t, request_id=index)
            if wait > 0:
                self.at(t + wait, self.pump)
                return
            heapq.heappop(self.pending)
            on_grant(t)

    def answer(self, route: str, job: Job, t: float, on_ok: Callable[[float], None]) -> None:
        """The server counts the hit; the answer's headers reach the pacer 20 ms later."""
        window = self.server[route]
        ok, remaining, retry_after = window.hit(t)

        def arrive(r: float) -> None:
            self.pacer.observe(
                window.limit, remaining, retry_after, route=route, now=r, request_id=job.index
            )
            self.pump(r)
            if ok:
                on_ok(r)
            else:
                resend = self.send_create if route == "create" else self.send_get
                self.request(r, route, job, lambda g: resend(job, g))

        self.at(t + 0.02, arrive)

    # -- creates ------------------------------------------------------------------------------

    def next_create(self, t: float) -> None:
        job = next(self.backlog, None)
        if job is not None:
            self.request(t, "create", job, lambda g: self.first_create(job, t, g))

    def first_create(self, job: Job, asked: float, t: float) -> None:
        self.create_waits.append(t - asked)
        job.create_start = t
        self.send_create(job, t)

    def send_create(self, job: Job, t: float) -> None:
        arrive = t + self.sc.upload_s + self.rng.uniform(0.05, 0.3)
        self.at(arrive, lambda a: self.answer("create", job, a, lambda r: self.created(job, r)))

    def created(self, job: Job, t: float) -> None:
        job.created_at = t
        job.mvsep_done = t - 0.02 + job.duration_s
        if self.use_planner:
            self.replan(t)
        else:
            self.schedule_poll(job, t)

    # -- polls --------------------------------------------------------------------------------

    def send_get(self, job: Job, t: float) -> None:
        job.polls += 1
        arrive = t + self.rng.uniform(0.05, 0.3)
        self.at(arrive, lambda a: self.answer("get", job, a, lambda r: self.polled(job, r, a)))

    def get(self, job: Job, t: float) -> None:
        job.polling = True
        self.last_sent = t
        self.request(t, "get", job, lambda g: self.send_get(job, g))

    def polled(self, job: Job, t: float, hit_at: float) -> None:
        job.polling = False
        if hit_at < job.mvsep_done:
            job.last_poll_at = t
            if self.use_planner:
                self.replan(t)
            else:
                self.schedule_poll(job, t)
            return
        job.seen_done = t
        elapsed = t - job.created_at
        if self.use_planner:
            low = 0.0 if job.last_poll_at is None else job.last_poll_at - job.created_at
            mean = self.estimator.expected(SEP_TYPE, input_s=self.sc.input_s)
            sd = self.estimator.spread(SEP_TYPE, input_s=self.sc.input_s)
            seen = censored_mean(mean, sd, low, elapsed)
            self.estimator.observe(SEP_TYPE, seen, input_s=self.sc.input_s, within_s=elapsed - low)
            self.replan(t)
        else:
            self.estimator.observe(SEP_TYPE, elapsed)  # today's engine: no input duration
        self.next_create(t)

    def schedule_poll(self, job: Job, t: float) -> None:
        """The baseline: the job's own timer from ``PollPolicy``."""
        delay = self.policy.next_poll_delay(
            status="processing",
            queue_position=None,
            finished_chunks=None,
            all_chunks=None,
            elapsed_s=t - job.created_at,
            expected_s=self.estimator.expected(SEP_TYPE),
            rng=self.rng,
        )
        self.at(t + delay, lambda d: self.get(job, d))

    def replan(self, t: float) -> None:
        """The planner: one plan over every job at MVSEP, as ``Polls.due_in`` makes it."""
        if t >= self.replan_at:
            self.replan_at = float("inf")
        views, sent = [], 0
        for job in self.jobs:
            if job.created_at <= 0 or job.seen_done >= 0:
                continue
            if job.polling:
                sent += 1
                continue
            views.append(
                JobView(
                    job_id=job.index,
                    started_at=job.created_at,
                    expected_s=self.estimator.expected(SEP_TYPE, input_s=self.sc.input_s),
                    spread_s=self.estimator.spread(SEP_TYPE, input_s=self.sc.input_s),
                    last_poll_at=job.last_poll_at,
                )
            )
        budget = Budget(
            calls_left=max(0, self.pacer.headroom("get", t) - sent),
            cap=self.pacer.cap("get"),
            window_s=self.pacer.span_s,
            backlog=sum(1 for j in self.jobs if j.create_start < 0),
            last_sent_at=self.last_sent,
        )
        plan = self.planner.plan(views, budget, t)
        for index in plan.poll_now:
            self.get(self.jobs[index], t)
        later = [at for i, at in plan.due_at.items() if i not in plan.poll_now]
        if later and min(later) < self.replan_at:
            self.replan_at = max(min(later), t + 0.01)
            self.at(self.replan_at, self.replan)

    # -- figures ------------------------------------------------------------------------------

    def result(self) -> Result:
        sc = self.sc
        first = min(j.create_start for j in self.jobs)
        wall = max(j.seen_done for j in self.jobs) - first
        busy = sum(j.mvsep_done - j.create_start for j in self.jobs)
        granted = sum(self.pacer.stats().granted.values())
        spans = sorted((j.create_start, j.seen_done) for j in self.jobs)
        return Result(
            wall_s=wall,
            physical_s=physical_limit(sc, self.jobs),
            at_mvsep=busy / (sc.slots * wall),
            lags=[j.seen_done - j.mvsep_done for j in self.jobs],
            calls_per_job=granted / sc.jobs,
            refused=sum(w.refused for w in self.server.values()),
            max_in_flight=most_overlapping(spans),
            max_create_wait_s=max(self.create_waits),
        )


def physical_limit(sc: Scenario, jobs: list[Job]) -> float:
    longest = max(j.duration_s for j in jobs) + sc.upload_s
    work = sum(j.duration_s + sc.upload_s for j in jobs) / sc.slots
    rate = sc.jobs * WINDOW_S / min(ROUTE_LIMITS.values())  # one call per job per route
    return max(longest, work, rate)


def most_overlapping(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, results: list[Result]) -> str:
    wall = statistics.fmean(r.wall_s for r in results)
    physical = statistics.fmean(r.physical_s for r in results)
    lags = [lag for r in results for lag in r.lags]
    return (
        f"  {name:9} wall {wall:6.1f} s  ×{wall / physical:.2f} physical  "
        f"at-MVSEP {statistics.fmean(r.at_mvsep for r in results):6.1%}  "
        f"lag p50 {pct(lags, 0.5):4.1f} s p95 {pct(lags, 0.95):4.1f} s  "
        f"calls/job {statistics.fmean(r.calls_per_job for r in results):.2f}  "
        f"429s {sum(r.refused for r in results)}  "
        f"in flight ≤ {max(r.max_in_flight for r in results)}  "
        f"create wait ≤ {max(r.max_create_wait_s for r in results):.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--only", default="", help="run the scenarios whose name has this")
    args = parser.parse_args(argv)
    routes = ", ".join(f"{name} {n}/min" for name, n in ROUTE_LIMITS.items())
    print(
        f"{platform.node()} · {platform.machine()} · Python {platform.python_version()} · "
        f"simulated, no network; server: a fixed window per route ({routes}); "
        f"{args.seeds} seeds per scenario, both sides on the same seeds\n"
    )
    for sc in SCENARIOS:
        if args.only not in sc.name:
            continue
        sides = {
            side: [
                Simulation(sc, seed, planner=side == "planner").run() for seed in range(args.seeds)
            ]
            for side in ("baseline", "planner")
        }
        physical = statistics.fmean(r.physical_s for r in sides["planner"])
        issue_bound = sc.jobs * 2 * WINDOW_S / LIMIT
        print(
            f"{sc.name} (input {sc.input_s:.0f} s, upload {sc.upload_s:.0f} s): "
            f"physical limit {physical:.1f} s; jobs x 2 calls / 60 per min = {issue_bound:.0f} s"
        )
        for side, results in sides.items():
            print(line(side, results))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
