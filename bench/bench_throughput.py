"""Throughput of `mvsep-watch separate` beside a sequential client, against the emulator.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_throughput.py [--scenario 10|50|300|free]... [--quick]
        [--baseline-all] [--seed N]

Each scenario starts an emulator on 127.0.0.1 (the 60-calls-a-minute limit on, per route, as
MVSEP) and runs `mvsep-watch separate` on its files as a subprocess (whatever engine is in
the tree), then, on a fresh emulator of the same seed (the same processing times), the
sequential baseline (bench/sequential_client.py: submit, a get every 20 s, download, next).

- ``10``: 10 files of 20 s, premium, processing 10 ± 3 s;
- ``50``: 50 files, premium (10 slots), 30 ± 10 s;
- ``300``: 300 files, premium, 2 s;
- ``free``: a free account (1 slot), 10 files, 20 ± 5 s.

Printed for each: wall time (the subprocess, start to exit), the ratio to the baseline, the
ratio to the physical limit (the largest of: the longest job; jobs × mean / slots; and
2 calls a job at the rate limit, less the window's first burst: MVSEP, and the emulator,
limit each route on its own, so a create and a get each take one call of their route's 60;
the same as one budget of 60 for both is printed beside it), slot use at MVSEP (from the
emulator's job times: slot-seconds busy between the first create and the last done), the
detection lag (MVSEP done → the first get that answered done, p50/p95), API calls per job
and 429s; then, for the daemon, where each freed slot's idle time went
(``slot_timeline.py``: (a) MVSEP done -> our get that saw it, (b) that get -> the next
create at the emulator, split from the daemon's log into done journaled / next job
claimed / create sent, (c) the create's arrival -> the slot assigned; mean and p95).
The baseline runs on ``10`` always (about 20 s a file); on the others only with
``--baseline-all``, else its time is estimated from the processing times (a get every 20 s)
plus the per-file overhead measured on ``10``, and marked "estimated". ``--quick`` scales
every time (processing, the baseline's poll) by 0.2 and the 50 and 300 scenarios to 10 and
60 files: a smoke run, not the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sequential_client  # noqa: E402
from slot_timeline import CallRecorder, SlotGaps, report_gaps, slot_gaps  # noqa: E402

from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402
from daemon.emulator.audio import write_test_audio  # noqa: E402
from daemon.emulator.state import EmulatorState  # noqa: E402

TOKEN = "bench-throughput-token"
RATE = 60  # calls a minute, per route
POLL_S = 20.0  # the public examples' interval


@dataclass(frozen=True)
class Scenario:
    name: str
    files: int
    mean_s: float
    jitter_s: float
    premium: bool

    @property
    def slots(self) -> int:
        return 10 if self.premium else 1

    def scaled(self, scale: float, files: int) -> Scenario:
        return Scenario(self.name, files, self.mean_s * scale, self.jitter_s * scale, self.premium)


SCENARIOS = {
    "10": Scenario("10 files / 10 ± 3 s, premium", 10, 10.0, 3.0, True),
    "50": Scenario("50 files / 30 ± 10 s, 10 slots", 50, 30.0, 10.0, True),
    "300": Scenario("300 files / 2 s, premium", 300, 2.0, 0.0, True),
    "free": Scenario("free account, 10 files / 20 ± 5 s", 10, 20.0, 5.0, False),
}
QUICK_FILES = {"10": 10, "50": 10, "300": 60, "free": 10}


@dataclass
class Measure:
    wall_s: float
    filed: int
    durations: list[float]  # each job's processing time at MVSEP
    slot_use: float
    lags: list[float]
    calls: dict[str, int]
    rate_limited: int
    most_in_flight: int
    span_s: float = math.nan  # first create -> last done at MVSEP
    gaps: SlotGaps | None = None  # where freed slots' idle time went (the daemon's side)

    @property
    def api_calls(self) -> int:
        return sum(n for k, n in self.calls.items() if k != "download")


def make_inputs(folder: Path, count: int, seconds: float = 20.0) -> list[Path]:
    """``count`` distinct WAVs of ``seconds`` (8 kHz mono: small, the duration is what counts)."""
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.wav"
    write_test_audio(template, seconds, sample_rate=8000, channels=1)
    data = template.read_bytes()
    template.unlink()
    paths = []
    for i in range(count):
        path = folder / f"song {i:03}.wav"
        path.write_bytes(data[:-2] + i.to_bytes(2, "little"))  # distinct: no de-duplication
        paths.append(path)
    return paths


def _options(sc: Scenario, seed: int) -> EmulatorOptions:
    return EmulatorOptions(
        premium=sc.premium,
        processing_s=sc.mean_s,
        processing_jitter_s=sc.jitter_s,
        rate_limit_per_min=RATE,
        seed=seed,
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _measure(state: EmulatorState, wall_s: float, filed: int, slots: int) -> Measure:
    times = state.job_times()
    done = {t.hash: t.done for t in times if t.done is not None}
    seen: dict[str, float] = {}
    for record in state.get_records():
        if record.status == "done" and record.files_visible and record.hash not in seen:
            seen[record.hash] = record.at
    lags = [seen[h] - done[h] for h in seen if h in done]
    busy = [(t.slot if t.slot is not None else t.created, t.done) for t in times if t.done]
    begin = min(t.created for t in times)
    end = max(b for _, b in busy)
    use = sum(b - a for a, b in busy) / (slots * (end - begin)) if end > begin else math.nan
    points = sorted([(a, 1) for a, _ in busy] + [(b, -1) for _, b in busy])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    stats = state.stats_json()
    return Measure(
        wall_s=wall_s,
        filed=filed,
        durations=[t.processing_s for t in times],
        slot_use=use,
        lags=lags,
        calls=dict(stats["calls"]),
        rate_limited=int(stats["rate_limited"]),
        most_in_flight=most,
        span_s=end - begin,
    )


def run_daemon(sc: Scenario, inputs: list[Path], work: Path, seed: int) -> Measure:
    """`mvsep-watch separate` on every input, as a subprocess."""
    env = {
        **os.environ,
        "MVSEP_API_TOKEN": TOKEN,
        "HOME": str(work / "home"),
        "XDG_CACHE_HOME": str(work / "home" / "cache"),
        "XDG_STATE_HOME": str(work / "home" / "state"),
        "XDG_CONFIG_HOME": str(work / "home" / "config"),
    }
    out = work / "out-daemon"
    with EmulatorServer(_options(sc, seed), host="127.0.0.1", port=0) as server:
        recorder = CallRecorder(server.state)
        argv = [
            str(Path(sys.executable).with_name("mvsep-watch")),
            "--log-format",
            "json",
            "separate",
            "--no-config",
            "--base-url",
            server.base_url,
            "--sep-type",
            "40",
            "--format",
            "wav16",
            "--out",
            str(out),
            "--journal",
            str(work / "separate.sqlite"),
            *map(str, inputs),
        ]
        offset_s = time.time() - time.monotonic()  # the log's wall clock -> monotonic
        started = time.monotonic()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            print(f"  separate exited {proc.returncode}: {proc.stderr[-2000:]}")
        filed = len({p.parent for p in out.rglob("*.wav")}) if out.exists() else 0
        measure = _measure(server.state, wall, filed, sc.slots)
        creates = recorder.times("create")
        measure.gaps = slot_gaps(server.state, creates, sc.slots, proc.stderr, offset_s)
        return measure


def run_baseline(sc: Scenario, inputs: list[Path], work: Path, seed: int, poll_s: float) -> Measure:
    """The sequential client on a fresh emulator of the same seed."""
    out = work / "out-baseline"
    with EmulatorServer(_options(sc, seed), host="127.0.0.1", port=0) as server:
        started = time.monotonic()
        results = sequential_client.run(server.base_url, inputs, out, token=TOKEN, poll_s=poll_s)
        wall = time.monotonic() - started
        return _measure(server.state, wall, len(results), sc.slots)


def _sequential_model(durations: list[float], poll_s: float) -> float:
    """The baseline's time if every transfer took nothing: each job seen at the next poll."""
    return sum(max(1, math.ceil(d / poll_s)) * poll_s for d in durations)


def rate_bounds(jobs: int) -> tuple[float, float]:
    """Seconds the rate limit alone needs for 2 calls a job, less the window's first burst:
    (one budget of RATE for both calls, each route its own RATE as MVSEP and the emulator)."""
    one_budget = max(0, 2 * jobs - RATE) * 60.0 / RATE
    per_route = max(0, jobs - RATE) * 60.0 / RATE  # jobs creates on one route, jobs gets on another
    return one_budget, per_route


def physical_limit(durations: list[float], slots: int) -> tuple[float, str]:
    """The largest of the longest job, jobs × mean / slots and the (per-route) rate bound."""
    jobs = len(durations)
    longest = max(durations)
    spread = sum(durations) / slots
    one_budget, per_route = rate_bounds(jobs)
    parts = f"longest {longest:.1f} s, jobs×mean/slots {spread:.1f} s, rate {per_route:.1f} s"
    return max(longest, spread, per_route), parts


def report(name: str, d: Measure, base_s: float, base_label: str, slots: int) -> None:
    limit, parts = physical_limit(d.durations, slots)
    jobs = len(d.durations)
    one_budget, _ = rate_bounds(jobs)
    print(f"{name}")
    print(f"  filed {d.filed}/{jobs}; wall {d.wall_s:.1f} s")
    print(f"  baseline {base_s:.1f} s ({base_label}): speed-up {base_s / d.wall_s:.2f}×")
    print(f"  physical limit {limit:.1f} s ({parts}): wall is {d.wall_s / limit:.2f}× it")
    if one_budget > 0:
        print(f"  rate bound as one budget of {RATE}/min for both calls: {one_budget:.1f} s "
              f"(wall {d.wall_s / one_budget:.2f}× it)")  # fmt: skip
    print(f"  slot use at MVSEP {d.slot_use:.1%} of {slots}; most in flight {d.most_in_flight}")
    print(
        f"  detection lag p50 {_percentile(d.lags, 0.5):.2f} s, p95 {_percentile(d.lags, 0.95):.2f}"
        f" s, max {max(d.lags, default=math.nan):.2f} s (n={len(d.lags)})"
    )
    calls = {k: n for k, n in sorted(d.calls.items()) if k != "download"}
    floor = (calls.get("create", 0) + calls.get("get", 0)) / jobs  # the floor is 2
    print(f"  API calls per job {d.api_calls / jobs:.2f} (create + get {floor:.2f}) {calls}; "
          f"429s {d.rate_limited}")  # fmt: skip
    if d.gaps is not None:
        print("\n".join(report_gaps(d.gaps, slots, d.span_s)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="times × 0.2, fewer files")
    parser.add_argument("--baseline-all", action="store_true", help="measure every baseline")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    scale = 0.2 if args.quick else 1.0
    poll_s = POLL_S * scale
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.system()} {platform.release()}); load average {os.getloadavg()[0]:.2f}"
    )
    print(f"rate limit {RATE}/min per route; baseline polls every {poll_s:g} s"
          + ("; --quick: a smoke run" if args.quick else ""))  # fmt: skip
    overhead: float | None = None  # the baseline's per-file time beyond its polls, from "10"
    for key in sorted(names, key=list(SCENARIOS).index):
        sc = SCENARIOS[key]
        if args.quick:
            sc = sc.scaled(scale, QUICK_FILES[key])
        with tempfile.TemporaryDirectory(prefix=f"bench-tput-{key}-") as tmp:
            work = Path(tmp)
            inputs = make_inputs(work / "in", sc.files)
            daemon = run_daemon(sc, inputs, work, args.seed)
            if key == "10" or args.baseline_all:
                base = run_baseline(sc, inputs, work, args.seed, poll_s)
                base_s, label = base.wall_s, "measured"
                if key == "10":
                    model = _sequential_model(base.durations, poll_s)
                    overhead = (base.wall_s - model) / sc.files
                note = (f"  baseline: detection lag p50 {_percentile(base.lags, 0.5):.1f} s, "
                        f"{base.api_calls / sc.files:.2f} calls/job")  # fmt: skip
            else:
                base_s = _sequential_model(daemon.durations, poll_s) + sc.files * (overhead or 0)
                label = "estimated" + ("" if overhead is not None else ", no transfer overhead")
                note = ""
            plan = "premium" if sc.premium else "free"
            heading = f"[{key}] {sc.files} files, {sc.mean_s:g} ± {sc.jitter_s:g} s, {plan}"
            report(f"{heading}, {sc.slots} slots", daemon, base_s, label, sc.slots)
            if note:
                print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
