"""Benchmark a big journal: `status` time, daemon start-up time and peak RSS, 100,000 jobs.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_journal_scale.py [--jobs 100000] [--runs 5]

Two journals are built side by side in a temp folder: the baseline with one job, the big one
with ``--jobs`` jobs (states spread as a library that has run for months: mostly filed, some
failed and cancelled, a few in flight) and three events each. The first job is journaled
through the real ``Journal`` verbs; the rest are copies of its row made in SQL (a benchmark
shortcut: journaling 100,000 files one by one would take minutes and measure nothing here).

Measured, each as real subprocesses of ``python -m daemon``:

- ``status`` and ``status --json``: wall time (best and median of ``--runs``) and peak RSS;
- ``run`` against the emulator on 127.0.0.1: time from the spawn to the "daemon started" log
  line, and the daemon's peak RSS (VmHWM) once started; then SIGTERM.

Goals (issue 12): start < 2 s, `status` < 0.3 s, RSS < 80 MB on 100,000 jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402
from daemon.jobs import JobRequest, SourceFile  # noqa: E402
from daemon.journal import Journal  # noqa: E402

STATES = (("filed", 90), ("failed", 5), ("cancelled", 4), ("queued", 1))  # percent


def build_journal(folder: Path, jobs: int) -> Path:
    """A journal of ``jobs`` jobs under ``folder/state``; returns its path."""
    path = folder / "state" / "journal.sqlite"
    inbox = folder / "in"
    inbox.mkdir(parents=True, exist_ok=True)
    source = SourceFile(
        path=inbox / "song-0.wav",
        inbox="in",
        relative_path="song-0.wav",
        preset="vocals",
        request=JobRequest(40, {}, 1, "BS Roformer"),
        output_dir=folder / "out",
        output_template="{relative_dir}/{name}/{name} - {stem}.{ext}",
        failed_dir=inbox / "_failed",
    )
    with Journal(path) as journal:
        journal.record_seen(source, size=1_000_000, mtime=1.0e9)
    if jobs <= 1:
        return path
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[1] != "id"]
    picked = ", ".join(columns)
    chosen = ", ".join(
        {
            "source_path": "replace(source_path, 'song-0', 'song-' || n)",
            "state": _state_case(),
            "mvsep_hash": "'2026' || n",
            "updated_at": "updated_at + n",
            "created_at": "created_at + n",
        }.get(c, c)
        for c in columns
    )
    with db:
        db.execute(
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
            f"INSERT INTO jobs ({picked}) SELECT {chosen} FROM jobs, seq WHERE jobs.id = 1",
            (jobs - 1,),
        )
        for kind in ("seen", "submitted", "filed"):
            db.execute(
                "INSERT INTO events (job_id, at, kind, to_state, reason)"
                " SELECT id, updated_at, ?, state, '' FROM jobs",
                (kind,),
            )
    db.close()
    return path


def _state_case() -> str:
    parts, low = [], 0
    for state, percent in STATES:
        parts.append(f"WHEN n % 100 < {low + percent} THEN '{state}'")
        low += percent
    return "CASE " + " ".join(parts) + " END"


def write_config(folder: Path, base_url: str) -> Path:
    config = {
        "mvsep": {"base_url": base_url, "api_token": "bench-token"},
        "journal": {"path": str(folder / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(folder / "state" / "algorithms.json")},
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": [{"path": str(folder / "in"), "preset": "vocals", "output": str(folder / "out")}],
    }
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one subprocess."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return took, usage.ru_maxrss / 1024


def status_figures(config: Path, runs: int, *extra: str) -> str:
    argv = [sys.executable, "-m", "daemon", "--config", str(config), "status", *extra]
    samples = [timed(argv) for _ in range(runs)]
    walls = [s[0] for s in samples]
    return (
        f"best {min(walls):.3f} s, median {statistics.median(walls):.3f} s, "
        f"RSS {max(s[1] for s in samples):.0f} MB"
    )


def start_figures(config: Path) -> str:
    """Spawn `run`, wait for "daemon started", read VmHWM, SIGTERM."""
    argv = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json"]
    started = time.perf_counter()
    proc = subprocess.Popen([*argv, "run"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    took = None
    for line in proc.stdout:
        try:
            event = json.loads(line).get("event")
        except ValueError:
            continue
        if event == "daemon started":
            took = time.perf_counter() - started
            break
    rss = _vm_hwm_mb(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    if took is None:
        raise SystemExit(f"the daemon never said it started (exit {proc.returncode})")
    return f"start {took:.2f} s, RSS {rss:.0f} MB"


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the big journal")
    parser.add_argument("--runs", type=int, default=5, help="status runs per figure")
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="mvsep-bench-journal-") as tmp, EmulatorServer(
        EmulatorOptions(premium=True, rate_limit=False), host="127.0.0.1", port=0
    ) as emulator:  # fmt: skip
        built = time.perf_counter()
        folders = {"baseline (1 job)": Path(tmp) / "one", f"{args.jobs:,} jobs": Path(tmp) / "big"}
        for name, folder in folders.items():
            n = 1 if name.startswith("baseline") else args.jobs
            journal = build_journal(folder, n)
            write_config(folder, emulator.base_url)
            print(f"{name}: journal {journal.stat().st_size / 1e6:.1f} MB")
        print(f"journals built in {time.perf_counter() - built:.1f} s")
        for name, folder in folders.items():
            config = folder / "config.toml"
            print(f"{name}:")
            print(f"  status:        {status_figures(config, args.runs)}")
            print(f"  status --json: {status_figures(config, args.runs, '--json')}")
            print(f"  run:           {start_figures(config)}")
    print("goals (issue 12): start < 2 s, status < 0.3 s, RSS < 80 MB on 100,000 jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
