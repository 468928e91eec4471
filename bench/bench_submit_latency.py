"""Benchmark detection-to-submit latency through the whole daemon, native and polling.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_submit_latency.py [--files 20] [--settle 1.0] [--poll 1.0]

The real daemon (watcher, journal, engine, client) runs against the emulator on 127.0.0.1,
with two inboxes: one watched natively (inotify here), one polled as a NAS share would be.
Files are dropped one at a time, each as an atomic rename of a finished WAV (the way most
copy tools finish a file). For each file the benchmark reads two moments from the journal's
event log: ``submit_intent`` (the daemon has decided to upload it) and ``submitted`` (MVSEP
answered the create with its hash). It prints, per inbox kind, the time from the drop to
each, and the same minus the configured settle time, which is a deliberate wait.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.config import load_settings  # noqa: E402
from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402
from daemon.emulator.audio import write_test_audio  # noqa: E402
from daemon.journal import Journal  # noqa: E402
from daemon.service import Daemon  # noqa: E402

EVENTS = ("seen", "submit_intent", "submitted")  # journaled by the watcher; engine decides; MVSEP


def _config(root: Path, base_url: str, settle_s: float, poll_s: float) -> Path:
    inboxes = []
    for kind in ("native", "polling"):
        (root / "in" / kind).mkdir(parents=True)
        inboxes.append(
            {
                "path": str(root / "in" / kind),
                "preset": "vocals",
                "output": str(root / "out" / kind),
                "settle_s": settle_s,
                "poll": kind == "polling",
                "poll_interval_s": poll_s,
                "after_success": "keep",
            }
        )
    config = {
        "mvsep": {
            "base_url": base_url,
            "api_token": "bench-token-0001",
            "rate_limit_per_minute": 6000,
        },
        "journal": {"path": str(root / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(root / "state" / "algorithms.json")},
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": inboxes,
    }
    path = root / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def _wait_for_event(journal_path: Path, name: str, kind: str, timeout_s: float) -> float:
    """Wall-clock time of the first ``kind`` event of the job for file ``name``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with Journal(journal_path, read_only=True) as journal:
            jobs = {j.id: j for j in journal.recent_jobs(10_000) if j.source.path.name == name}
            for event in journal.events(limit=100_000):
                if event.job_id in jobs and event.kind == kind:
                    return event.at
        time.sleep(0.02)
    raise TimeoutError(f"{name}: no {kind} event within {timeout_s} s")


def _summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{label}: median {statistics.median(values):.3f}s p90 {p90:.3f}s max {max(values):.3f}s"


def run(files: int, settle_s: float, poll_s: float) -> None:
    # MVSEP's 60 calls a minute would make this a benchmark of the pacer (40 files in a minute
    # need about 120 calls): the emulator advertises, and the daemon obeys, a limit of 6000
    options = EmulatorOptions(premium=True, processing_s=0.2, rate_limit_per_min=6000)
    with (
        tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp,
        EmulatorServer(options, port=0) as emulator,
    ):
        root = Path(tmp)
        (root / "staging").mkdir()
        settings, _ = load_settings(_config(root, emulator.base_url, settle_s, poll_s), env={})
        daemon = Daemon(settings, config_label="bench")
        daemon.start()
        journal_path = settings.journal.path
        results: dict[str, dict[str, list[float]]] = {}
        try:
            for n, kind in enumerate(("native", "polling")):
                got = results.setdefault(kind, {e: [] for e in EVENTS})
                for i in range(files):
                    name = f"{kind} take {i:03d}.wav"
                    staged = root / "staging" / name
                    write_test_audio(staged, 1.0 + (n * files + i) / 100)  # all distinct
                    dropped = time.time()
                    os.replace(staged, root / "in" / kind / name)
                    for event in EVENTS:
                        at = _wait_for_event(journal_path, name, event, settle_s + 60)
                        got[event].append(at - dropped)
        finally:
            daemon.stop()
    for kind, got in results.items():
        seen, intent, submitted = got["seen"], got["submit_intent"], got["submitted"]
        print(
            f"{kind:8s} n={files} settle={settle_s:.2f}s poll={poll_s:.2f}s | "
            + _summary("drop->journaled (watcher)", seen)
            + " | "
            + _summary("drop->submit_intent", intent)
            + " | "
            + _summary("drop->create answered", submitted)
        )
        print(
            f"{'':8s} minus settle | "
            + _summary("drop->submit_intent", [x - settle_s for x in intent])
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="files per inbox kind")
    parser.add_argument("--settle", type=float, default=1.0, help="settle_s")
    parser.add_argument("--poll", type=float, default=1.0, help="poll_interval_s of the NAS inbox")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger().setLevel(logging.WARNING)
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cpus")
    run(args.files, args.settle, args.poll)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
