"""Plan caps are checked before any byte is sent (issue 9, item 7).

A free account (the emulator's default) may send 100 MB and 10 minutes. The real daemon
(a `mvsep-watch run` subprocess) gets two inputs over the caps that cost no real space or
time: a WAV whose header says 11 minutes at 1 kHz mono (a few hundred KB), and a sparse
WAV of 150 MB (a real header, a real tail, holes between). Both fail with the cap in their
reason and MVSEP sees no create for them; a small file beside them is filed.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import wait_until, write_config

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.jobs import Job, JobState
from daemon.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
BIG_BYTES = 150_000_000


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorOptions(premium=False, rate_limit=False)) as server:
        yield server


def sparse_wav(path: Path, size: int) -> None:
    """A PCM WAV (8 kHz mono 8-bit) of ``size`` bytes: header and last MB written, holes
    between (sparse on any filesystem that has them)."""
    data = size - 44
    header = b"RIFF" + struct.pack("<I", size - 8) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    header += b"data" + struct.pack("<I", data)
    tail = random.Random(7).randbytes(1 << 20)
    with path.open("wb") as fh:
        fh.write(header + tail)
        fh.seek(size - len(tail))
        fh.write(tail)


def jobs(tmp: Path) -> list[Job]:
    path = tmp / "state" / "journal.sqlite"
    if not path.exists():
        return []
    try:
        with Journal(path, read_only=True) as journal:
            return journal.recent_jobs(100)
    except sqlite3.OperationalError:  # the daemon is creating it
        return []


def test_files_over_the_free_plan_fail_before_upload(
    tmp_path: Path, emulator: EmulatorServer, audio_file: Callable[..., Path]
) -> None:
    long = audio_file("in/long.wav", seconds=660.0, sample_rate=1000, channels=1)
    big = tmp_path / "in" / "big.wav"
    sparse_wav(big, BIG_BYTES)
    audio_file("in/small.wav", seconds=1.0)
    assert long.stat().st_size < 2_000_000  # the test's files cost no real space
    config = write_config(tmp_path, emulator.base_url)
    log = tmp_path / "daemon.log"
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=dict(os.environ))
    try:
        wait_until(
            lambda: len(jobs(tmp_path)) == 3 and all(j.state.is_terminal for j in jobs(tmp_path)),
            "every job finished",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    by_name = {j.source.path.name: j for j in jobs(tmp_path)}
    tail = log.read_text(errors="replace")[-3000:]
    assert by_name["small.wav"].state is JobState.FILED, tail
    assert by_name["long.wav"].state is JobState.FAILED, tail
    assert by_name["big.wav"].state is JobState.FAILED, tail
    assert "10 min" in (by_name["long.wav"].last_error or "")
    assert "100 MB" in (by_name["big.wav"].last_error or "")
    sent = [view.upload_name for view in emulator.jobs.values()]
    assert len(sent) == 1 and sent[0].endswith("small.wav"), sent
    calls = emulator.stats["calls"]
    assert isinstance(calls, dict) and calls.get("create") == 1, calls  # no byte of the others
