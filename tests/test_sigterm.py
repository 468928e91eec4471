"""SIGTERM: `mvsep-watch run` stops within 10 s, leaves its jobs running at MVSEP, and a
restart finishes them without a second create.

The daemon runs as a real subprocess (what systemd/launchd start) against the emulator in
this process. The emulator runs on a manual clock, so its jobs stay ``processing`` and its
rate-limit window stays full until the test moves time on. The daemon spends its requests
of the minute (a limit of 12) on the account, the catalogue, three creates and fast polls;
its next poll then waits in the pacer for the window, which is when SIGTERM comes: the
moment a naive stop would wait out the rate limit (up to a minute).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until, write_config

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.testing import ManualClock
from daemon.jobs import JobState
from daemon.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 12
POLL_CAP = LIMIT - 2 - 4  # the pacer keeps a margin of 2 and reserves 4 places for non-polls
FILES = 3


@pytest.fixture
def emulator() -> Iterator[tuple[EmulatorServer, ManualClock]]:
    clock = ManualClock()
    options = EmulatorOptions(premium=True, processing_s=30.0, rate_limit_per_min=LIMIT)
    with EmulatorServer(options, host="127.0.0.1", port=0, clock=clock) as server:
        yield server, clock


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=dict(os.environ))


def journal_states(tmp: Path) -> list[JobState]:
    path = tmp / "state" / "journal.sqlite"
    if not path.exists():
        return []
    with Journal(path, read_only=True) as journal:
        return [job.state for job in journal.recent_jobs(100)]


def test_sigterm_stops_within_10_s_and_restart_finishes_without_resubmitting(
    tmp_path: Path,
    emulator: tuple[EmulatorServer, ManualClock],
    audio_file: Callable[..., Path],
) -> None:
    server, clock = emulator
    for i in range(FILES):
        audio_file(f"in/song {i}.wav", seconds=1.0 + i / 100)  # each its own audio
    config = write_config(tmp_path, server.base_url, mvsep={"rate_limit_per_minute": LIMIT})
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_until(lambda: len(server.jobs) == FILES, "three creates")
        # the window is spent for polls: the engine's next poll waits in the pacer
        wait_until(lambda: api_calls(server) >= POLL_CAP, "the rate-limit window to fill")
        time.sleep(1.0)  # let a poll enter the pacer's wait (nothing observable to wait on)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"SIGTERM to exit: {took_s:.2f} s")
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert took_s < 10.0, log.read_text(errors="replace")[-3000:]

    # the jobs were left running at MVSEP, and the journal knows their hashes
    assert all(job.state == "processing" for job in server.jobs.values())
    assert journal_states(tmp_path) == [JobState.QUEUED] * FILES

    clock.advance(61.0)  # the window is over and the jobs are done at MVSEP
    proc = start_daemon(config, log)
    try:
        wait_until(lambda: journal_states(tmp_path) == [JobState.FILED] * FILES, "every job filed")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert len(server.jobs) == FILES  # not a single second create
    stems = sorted(p.name for p in (tmp_path / "out").rglob("*.wav"))
    assert len(stems) == 2 * FILES, stems


def api_calls(server: Any) -> int:
    return sum(server.stats["calls"].values())
