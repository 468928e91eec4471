"""Discrete-event simulation of the pacing benchmark: no network, no sleeping.

Scenario: a premium account with 10 slots, 50 files ready at t=0, MVSEP processing uniform
30 ± 10 s, upload 1 s. The server counts each route on its own, as the real service does
(see ``daemon.pacing``): a Laravel-style fixed window per route (opened by the route's first
hit, 60 s long; a hit beyond the route's limit gets 429 with Retry-After and is not
counted), 60 a minute on ``create`` and on ``get`` (the emulator's defaults), and every
answer carries its route's ``X-RateLimit-Limit``/``-Remaining``. The daemon side uses the
real ``Pacer`` (told each answer's route, as the client does), ``PollPolicy`` and
``DurationEstimator``: one create per job, then polls at the policy's delays, each through
the pacer (strict priority then FIFO, like ``Pacer.acquire``).

Printed per configuration (mean over seeds, worst in brackets):

* utilisation (a) held: a slot is busy from its create's grant until the daemon sees done;
* utilisation (b) at-MVSEP: from the create's grant until MVSEP finished processing;
  both over the span first create -> last done seen;
* the ceiling: (a) with an oracle that sees every done instantly at no API cost;
* API calls per job, polls per job, detection latency, 429s, the most requests the server
  counted in any 60-s sliding window per route (>= any fixed window at any phase; each
  against its limit) and over all routes together (which may exceed 60: routes are separate).

Usage: ``python bench/bench_pacing.py [--seeds 20] [--grid]``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.pacing import Pacer  # noqa: E402
from daemon.polling import DurationEstimator, PollPolicy  # noqa: E402

SLOTS = 10
JOBS = 50
MEAN_S = 30.0
SPREAD_S = 10.0
UPLOAD_S = 1.0
LIMIT = 60  # the pacer's limit for a route it has not heard from yet
ROUTE_LIMITS = {"create": 60, "get": 60}  # X-RateLimit-Limit per route (the emulator's)
WINDOW_S = 60.0
SEP_TYPE = 40


@dataclass
class Config:
    policy: PollPolicy = field(default_factory=PollPolicy)
    poll_reserve: int = 4
    safety_margin: int = 2
    guard_s: float = 0.0
    prior_s: float | None = None
    estimate: str = "seen"  # what the engine feeds the estimator: "seen" or "mid"


@dataclass
class Job:
    index: int
    duration_s: float
    create_start: float = 0.0
    created_at: float = 0.0  # the create's answer reached the daemon
    mvsep_done: float = 0.0
    seen_done: float = -1.0
    last_not_done_s: float | None = None
    polls: int = 0


class FixedWindow:
    """Laravel's throttle of one route: a 60-s window opened by the first hit, 429 past
    the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.window_start = -1e18
        self.count = 0
        self.counted: list[float] = []
        self.refused = 0

    def hit(self, t: float) -> tuple[bool, int, float | None]:
        if t >= self.window_start + WINDOW_S:
            self.window_start, self.count = t, 0
        if self.count >= self.limit:
            self.refused += 1
            return False, 0, self.window_start + WINDOW_S - t
        self.count += 1
        self.counted.append(t)
        return True, self.limit - self.count, None


class RouteServer:
    """The server's rate limiting: one :class:`FixedWindow` per route (``ROUTE_LIMITS``)."""

    def __init__(self) -> None:
        self.routes = {name: FixedWindow(limit) for name, limit in ROUTE_LIMITS.items()}

    def hit(self, route: str, t: float) -> tuple[bool, int, int, float | None]:
        """``(counted, X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After)``."""
        window = self.routes[route]
        ok, remaining, retry_after = window.hit(t)
        return ok, window.limit, remaining, retry_after

    @property
    def refused(self) -> int:
        return sum(w.refused for w in self.routes.values())

    def max_windows(self) -> dict[str, int]:
        """The most hits counted in any sliding 60-s window, per route and over all."""
        out = {name: max_sliding(w.counted) for name, w in self.routes.items()}
        out["all"] = max_sliding(sorted(t for w in self.routes.values() for t in w.counted))
        return out


@dataclass
class Result:
    held: float
    at_mvsep: float
    ceiling: float
    calls_per_job: float
    polls_per_job: float
    latency_s: float
    refused: int
    max_window: dict[str, int]
    max_create_wait_s: float


class Simulation:
    def __init__(self, config: Config, seed: int) -> None:
        self.cfg = config
        self.rng = random.Random(seed)
        self.jobs = [
            Job(i, self.rng.uniform(MEAN_S - SPREAD_S, MEAN_S + SPREAD_S)) for i in range(JOBS)
        ]
        self.pacer = Pacer(
            limit=LIMIT,
            window_s=WINDOW_S,
            guard_s=config.guard_s,
            safety_margin=config.safety_margin,
            poll_reserve=config.poll_reserve,
        )
        self.estimator = DurationEstimator(prior_s=config.prior_s)
        self.server = RouteServer()
        self.events: list[tuple[float, int, Callable[[float], None]]] = []
        self.pending: list[tuple[int, int, float, str, Callable[[float], None]]] = []
        self.seq = itertools.count()
        self.backlog: Iterator[Job] = iter(self.jobs)
        self.create_waits: list[float] = []

    def at(self, t: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self.events, (t, next(self.seq), action))

    def run(self) -> None:
        for _ in range(SLOTS):
            self.next_create(0.0)
        while self.events:
            t, _, action = heapq.heappop(self.events)
            action(t)

    # -- the daemon side ----------------------------------------------------------------------

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

    def next_create(self, t: float) -> None:
        job = next(self.backlog, None)
        if job is not None:
            self.request(t, "create", job, lambda g: self.send_create(job, t, g))

    def send_create(self, job: Job, asked: float, t: float) -> None:
        self.create_waits.append(t - asked)
        if job.create_start == 0.0 and job.seen_done < 0:
            job.create_start = t
        arrive = t + UPLOAD_S + self.rng.uniform(0.05, 0.3)
        self.at(arrive, lambda a: self.server_create(job, a))

    def server_create(self, job: Job, t: float) -> None:
        ok, limit, remaining, retry_after = self.server.hit("create", t)
        answer = t + 0.02
        if not ok:
            self.at(
                answer,
                lambda r: self.refused(
                    r, job, limit, retry_after, "create", lambda g: self.send_create(job, r, g)
                ),
            )
            return
        job.mvsep_done = t + job.duration_s
        self.at(answer, lambda r: self.created(job, r, limit, remaining))

    def observe(
        self,
        t: float,
        job: Job,
        route: str,
        limit: int,
        remaining: int,
        retry_after: float | None,
    ) -> None:
        """An answer's headers reach the pacer with its route, as the client passes them."""
        self.pacer.observe(limit, remaining, retry_after, route=route, now=t, request_id=job.index)
        self.pump(t)  # what Pacer.acquire's condition notify does for blocked threads

    def refused(
        self,
        t: float,
        job: Job,
        limit: int,
        retry_after: float | None,
        kind: str,
        again: Callable[[float], None],
    ) -> None:
        self.observe(t, job, kind, limit, 0, retry_after)
        self.request(t, kind, job, again)

    def created(self, job: Job, t: float, limit: int, remaining: int) -> None:
        self.observe(t, job, "create", limit, remaining, None)
        job.created_at = t
        self.schedule_poll(job, t)

    def schedule_poll(self, job: Job, t: float) -> None:
        delay = self.cfg.policy.next_poll_delay(
            status="processing",
            queue_position=None,
            finished_chunks=None,
            all_chunks=None,
            elapsed_s=t - job.created_at,
            expected_s=self.estimator.expected(SEP_TYPE),
            rng=self.rng,
        )
        self.at(t + delay, lambda d: self.request(d, "get", job, lambda g: self.send_get(job, g)))

    def send_get(self, job: Job, t: float) -> None:
        job.polls += 1
        self.at(t + self.rng.uniform(0.05, 0.3), lambda a: self.server_get(job, a))

    def server_get(self, job: Job, t: float) -> None:
        ok, limit, remaining, retry_after = self.server.hit("get", t)
        answer = t + 0.02
        if not ok:
            self.at(
                answer,
                lambda r: self.refused(
                    r, job, limit, retry_after, "get", lambda g: self.send_get(job, g)
                ),
            )
            return
        done = t >= job.mvsep_done
        self.at(answer, lambda r: self.polled(job, r, limit, remaining, done))

    def polled(self, job: Job, t: float, limit: int, remaining: int, done: bool) -> None:
        self.observe(t, job, "get", limit, remaining, None)
        elapsed = t - job.created_at
        if not done:
            job.last_not_done_s = elapsed
            self.schedule_poll(job, t)
            return
        job.seen_done = t
        lower = job.last_not_done_s
        seen = elapsed if lower is None or self.cfg.estimate == "seen" else (lower + elapsed) / 2
        self.estimator.observe(SEP_TYPE, seen)
        self.next_create(t)

    # -- figures ------------------------------------------------------------------------------

    def result(self) -> Result:
        first = min(j.create_start for j in self.jobs)
        span = max(j.seen_done for j in self.jobs) - first
        held = sum(j.seen_done - j.create_start for j in self.jobs) / (SLOTS * span)
        at_mvsep = sum(j.mvsep_done - j.create_start for j in self.jobs) / (SLOTS * span)
        granted = sum(self.pacer.stats().granted.values())
        polls = sum(j.polls for j in self.jobs)
        return Result(
            held=held,
            at_mvsep=at_mvsep,
            ceiling=oracle_utilisation(self.jobs),
            calls_per_job=granted / JOBS,
            polls_per_job=polls / JOBS,
            latency_s=statistics.fmean(j.seen_done - j.mvsep_done for j in self.jobs),
            refused=self.server.refused,
            max_window=self.server.max_windows(),
            max_create_wait_s=max(self.create_waits),
        )


def oracle_utilisation(jobs: list[Job]) -> float:
    """Utilisation if every done were seen at once and every create went at once."""
    free = [0.0] * SLOTS
    busy = 0.0
    ends: list[float] = []
    for job in jobs:
        start = heapq.heappop(free)
        end = start + UPLOAD_S + 0.2 + job.duration_s
        busy += end - start
        ends.append(end)
        heapq.heappush(free, end)
    return busy / (SLOTS * max(ends))


def max_sliding(times: list[float]) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - WINDOW_S:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def evaluate(config: Config, seeds: int) -> list[Result]:
    results = []
    for seed in range(seeds):
        sim = Simulation(config, seed)
        sim.run()
        results.append(sim.result())
    return results


def summary(results: list[Result]) -> str:
    def mean(name: str) -> float:
        return statistics.fmean(getattr(r, name) for r in results)

    return (
        f"(a) held {mean('held'):6.1%} [min {min(r.held for r in results):.1%}]  "
        f"(b) at-MVSEP {mean('at_mvsep'):6.1%} [min {min(r.at_mvsep for r in results):.1%}]  "
        f"ceiling {mean('ceiling'):.1%}\n"
        f"    calls/job {mean('calls_per_job'):.2f} (polls {mean('polls_per_job'):.2f})  "
        f"seen-done latency {mean('latency_s'):.1f} s  "
        f"max create wait {max(r.max_create_wait_s for r in results):.1f} s  "
        f"429s {sum(r.refused for r in results)}\n"
        f"    max calls in any 60-s window: {windows(results)}"
    )


def windows(results: list[Result]) -> str:
    """The worst sliding window of each route (against its limit), and of all together."""
    parts = [
        f"{name} {max(r.max_window[name] for r in results)}/{limit}"
        for name, limit in ROUTE_LIMITS.items()
    ]
    parts.append(f"all routes {max(r.max_window['all'] for r in results)}")
    return ", ".join(parts)


def grid(seeds: int) -> None:
    rows = []
    for first, step, overdue, reserve in itertools.product(
        (0.6, 0.65, 0.7, 0.75, 0.8), (0.1, 0.15, 0.2, 0.25), (0.05, 0.1), (2, 4, 6)
    ):
        policy = replace(
            PollPolicy(),
            processing_first_fraction=first,
            processing_step_fraction=step,
            processing_overdue_fraction=overdue,
        )
        res = evaluate(Config(policy=policy, poll_reserve=reserve), seeds)
        held = statistics.fmean(r.held for r in res)
        at = statistics.fmean(r.at_mvsep for r in res)
        refused = sum(r.refused for r in res)
        rows.append((refused == 0 and held >= 0.9, at, held, first, step, overdue, reserve))
    rows.sort(reverse=True)
    print("ok    (b)     (a)    first step overdue reserve")
    for ok, at, held, first, step, overdue, reserve in rows[:15]:
        print(f"{ok!s:5} {at:6.1%} {held:6.1%}  {first:5} {step:4} {overdue:7} {reserve:7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--grid", action="store_true", help="search the policy's knobs")
    args = parser.parse_args(argv)
    if args.grid:
        grid(args.seeds)
        return 0
    print(
        f"{SLOTS} slots, {JOBS} jobs of {MEAN_S:.0f} ± {SPREAD_S:.0f} s, upload {UPLOAD_S:.0f} s,"
        f" server: a fixed window per route ("
        + ", ".join(f"{name} {n}/min" for name, n in ROUTE_LIMITS.items())
        + f"), {args.seeds} seeds\n"
    )
    variants = {
        "defaults (no prior, estimator fed the elapsed time at seen-done)": Config(),
        "estimator fed the midpoint of the last not-done and the done poll": Config(estimate="mid"),
        "prior 30 s": Config(prior_s=30.0),
        "poll_reserve 2": Config(poll_reserve=2),
        "poll_reserve 0": Config(poll_reserve=0),
        "old public-client style: every 5 s": Config(
            policy=replace(
                PollPolicy(),
                processing_first_fraction=0.0,
                processing_step_fraction=0.0,
                processing_overdue_fraction=0.0,
                processing_floor_s=5.0,
                processing_unknown_s=5.0,
            )
        ),
    }
    for name, config in variants.items():
        print(f"{name}:\n    {summary(evaluate(config, args.seeds))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
