"""Slot utilisation of the engine at the account's full concurrency, under the rate limit.

Run by hand:  .venv/bin/python bench/bench_engine_slots.py [--files 50] [--slots 10]

A premium account of 10 slots, 50 files, emulated processing of 30 ± 10 s per job and the
emulator's rate limit of 60 API calls a minute on. The real engine, journal, client and pacer
(as `run` builds them) talk to the emulator over loopback. Prints:

- slot utilisation, held: a slot is busy from the moment the engine commits to a submit
  (intent journaled) until it has seen the job done; busy slot-seconds / available
  slot-seconds between the first submit and the last done (the issue's figure);
- slot utilisation at MVSEP: busy from the create's arrival until MVSEP finished processing
  (the stricter view: detection lag counts as idle);
- API calls per job, and every HTTP 429 the emulator sent;
- then a free account (1 slot) on 4 files: the most jobs ever in flight at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.audio import write_test_audio
from daemon.engine import Engine, EngineSettings
from daemon.jobs import JobRequest, SourceFile
from daemon.journal import Journal
from daemon.logs import configure_logging
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer

REQUEST = JobRequest(sep_type=40, options={}, output_format=1, algorithm_name="BS Roformer")


def make_inputs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.wav"
    write_test_audio(template, 3.0)
    data = template.read_bytes()
    paths = []
    for i in range(count):
        path = folder / f"song {i:03}.wav"
        # each file differs (the last sample) so de-duplication does not merge them
        path.write_bytes(data[:-2] + i.to_bytes(2, "little", signed=False))
        paths.append(path)
    template.unlink()
    return paths


def run_batch(work: Path, server: EmulatorServer, inputs: list[Path]) -> tuple[Journal, float]:
    journal = Journal(work / "journal.sqlite")
    client = MvsepClient(base_url=server.base_url, api_token="bench-token", gate=Pacer())
    engine = Engine(journal=journal, client=client, settings=EngineSettings())
    (work / "out").mkdir(exist_ok=True)  # as the daemon does at start
    for path in inputs:
        engine.submit_file(
            SourceFile(
                path=path,
                inbox="bench",
                relative_path=path.name,
                preset="bench",
                request=REQUEST,
                output_dir=work / "out",
                output_template="{name}/{stem}.{ext}",
                failed_dir=work / "failed",
            )  # fmt: skip
        )
    started = time.monotonic()
    engine.run_until_idle()
    elapsed = time.monotonic() - started
    engine.stop()
    client.close()
    return journal, elapsed


def utilisation(intervals: list[tuple[float, float]], slots: int) -> float:
    begin = min(a for a, _ in intervals)
    end = max(b for _, b in intervals)
    busy = sum(b - a for a, b in intervals)
    return busy / (slots * (end - begin))


def held_intervals(journal: Journal) -> list[tuple[float, float]]:
    start: dict[int, float] = {}
    out = []
    for event in journal.events(limit=1_000_000):
        if event.kind == "submit_intent":
            start[event.job_id] = event.at
        elif event.kind == "result_ready" and event.job_id in start:
            out.append((start.pop(event.job_id), event.at))
    return out


def mvsep_intervals(server: EmulatorServer) -> list[tuple[float, float]]:
    # The emulator's own job records (internal state, read for measurement only).
    jobs: list[Any] = list(server.state.jobs.values())
    return [(j.created_mono, max(j.timed_done, j.dsp_done_mono or 0.0)) for j in jobs]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


def premium_run(args: argparse.Namespace, work: Path) -> None:
    options = EmulatorOptions(
        premium=True, processing_s=30.0, processing_jitter_s=10.0, rate_limit_per_min=60
    )
    inputs = make_inputs(work / "in", args.files)
    with EmulatorServer(options) as server:
        journal, elapsed = run_batch(work, server, inputs)
        held = held_intervals(journal)
        at_mvsep = mvsep_intervals(server)
        stats: dict[str, Any] = server.stats
        filed = journal.counts_by_state().get("filed", 0)
        journal.close()
    api_calls = sum(stats["calls"].values()) - stats["calls"].get("download", 0)
    print(f"premium: {args.files} files, {args.slots} slots, processing 30 ± 10 s, 60 calls/min")
    print(f"  filed: {filed}/{args.files} in {elapsed:.0f} s")
    print(f"  slot utilisation (held, intent → done seen): {utilisation(held, args.slots):.1%}")
    print(
        f"  slot utilisation (at MVSEP, create → done):   {utilisation(at_mvsep, args.slots):.1%}"
    )
    print(f"  most jobs in flight at MVSEP: {max_overlap(at_mvsep)}")
    print(f"  API calls per job: {api_calls / args.files:.2f} ({dict(stats['calls'])})")
    print(f"  HTTP 429 received: {stats['rate_limited']}")


def free_run(work: Path) -> None:
    options = EmulatorOptions(premium=False, processing_s=2.0, rate_limit_per_min=60)
    inputs = make_inputs(work / "in", 4)
    with EmulatorServer(options) as server:
        journal, elapsed = run_batch(work, server, inputs)
        intervals = mvsep_intervals(server)
        rejected = server.stats["creates_rejected"]
        journal.close()
    print(
        f"free: 4 files in {elapsed:.0f} s; most jobs in flight at once: "
        f"{max_overlap(intervals)}; creates refused for the parallel limit: {rejected}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--skip-premium", action="store_true")
    args = parser.parse_args()
    configure_logging(fmt="console", level="warning")
    with tempfile.TemporaryDirectory(prefix="bench-slots-") as tmp:
        if not args.skip_premium:
            premium_run(args, Path(tmp) / "premium")
        free_run(Path(tmp) / "free")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
