"""Drop-to-filed latency of the whole daemon at zero emulated processing: its own overhead.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_latency.py [--files 10] [--settle 1.0] [--poll 1.0]

The real daemon (`daemon.service.Daemon`: watcher, journal, engine, client) runs against the
emulator on 127.0.0.1 with processing at 0 s and two inboxes: one watched natively (inotify
here), one polled (as a NAS share). Files are dropped one at a time (an atomic rename of a
finished WAV) and each waits for its job's ``filed`` event in the journal. Printed per inbox:
drop → filed minus the settle time (a deliberate wait), median and p95, and the part after
the create's answer (``submitted`` → ``filed``). The baseline, measured in the same run: the
same file sent by a bare client (bench/sequential_client.py with no wait between the create
and its gets: create, get until done, download), the floor of the API round trips.

The emulator advertises 6000 calls a minute here, so this measures the daemon, not the pacer.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sequential_client  # noqa: E402

from daemon.config import load_settings  # noqa: E402
from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402
from daemon.emulator.audio import write_test_audio  # noqa: E402
from daemon.journal import Journal  # noqa: E402
from daemon.service import Daemon  # noqa: E402

TOKEN = "bench-latency-token"
KINDS = ("native", "polling")


def _config(root: Path, base_url: str, settle_s: float, poll_s: float) -> Path:
    inboxes = []
    for kind in KINDS:
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
        "mvsep": {"base_url": base_url, "api_token": TOKEN, "rate_limit_per_minute": 6000},
        "journal": {"path": str(root / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(root / "state" / "algorithms.json")},
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": inboxes,
    }
    path = root / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    path.chmod(0o600)  # it holds the (emulator's) token
    return path


def _events_of(journal_path: Path, name: str, timeout_s: float) -> dict[str, float]:
    """The first time of each event kind of the job for file ``name``, once it is filed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with Journal(journal_path, read_only=True) as journal:
            ids = {j.id for j in journal.recent_jobs(10_000) if j.source.path.name == name}
            found: dict[str, float] = {}
            for event in journal.events(limit=100_000):
                if event.job_id in ids:
                    found.setdefault(event.kind, event.at)
        if "filed" in found:
            return found
        if "failed" in found:
            raise RuntimeError(f"{name} failed")
        time.sleep(0.01)
    raise TimeoutError(f"{name}: not filed within {timeout_s} s")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _line(label: str, values: list[float]) -> str:
    return f"{label} median {statistics.median(values):.3f} s, p95 {_p95(values):.3f} s"


def run(files: int, settle_s: float, poll_s: float) -> None:
    options = EmulatorOptions(premium=True, processing_s=0.0, rate_limit_per_min=6000)
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        EmulatorServer(options, host="127.0.0.1", port=0) as emulator,
    ):
        root = Path(tmp)
        (root / "staging").mkdir()
        settings, _ = load_settings(_config(root, emulator.base_url, settle_s, poll_s), env={})
        daemon = Daemon(settings, config_label="bench")
        daemon.start()
        results: dict[str, tuple[list[float], list[float]]] = {}
        try:
            for n, kind in enumerate(KINDS):
                total, after = results.setdefault(kind, ([], []))
                for i in range(files):
                    name = f"{kind} take {i:03d}.wav"
                    staged = root / "staging" / name
                    write_test_audio(staged, 1.0 + (n * files + i) / 100)  # all distinct
                    dropped = time.time()
                    os.replace(staged, root / "in" / kind / name)
                    events = _events_of(settings.journal.path, name, settle_s + poll_s + 120)
                    total.append(events["filed"] - dropped - settle_s)
                    after.append(events["filed"] - events["submitted"])
        finally:
            daemon.stop()
        bare: list[float] = []
        for i in range(files):
            song = root / "staging" / f"bare {i:03d}.wav"
            write_test_audio(song, 1.0 + (2 * files + i) / 100)
            client_out = root / "out" / "bare"
            bare += [
                r.seconds
                for r in sequential_client.run(
                    emulator.base_url, [song], client_out, token=TOKEN, poll_s=0.0
                )
            ]
    print(f"settle {settle_s:g} s, poll interval {poll_s:g} s, {files} files per inbox")
    for kind, (total, after) in results.items():
        print(
            f"  {kind:8s} "
            + _line("drop → filed minus settle:", total)
            + " | "
            + _line("create answered → filed:", after)
        )
    print("  baseline " + _line("bare client, create → stems on disk:", bare))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10, help="files per inbox kind")
    parser.add_argument("--settle", type=float, default=1.0, help="settle_s")
    parser.add_argument("--poll", type=float, default=1.0, help="poll_interval_s of the NAS inbox")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger().setLevel(logging.WARNING)
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.system()} {platform.release()}); load average {os.getloadavg()[0]:.2f}"
    )
    run(args.files, args.settle, args.poll)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
