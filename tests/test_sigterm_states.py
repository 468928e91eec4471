"""SIGTERM ends `mvsep-watch run` within 10 s in every state a job can be in (issue 9,
item 13): a create whose answer is pending (the job exists at MVSEP, its answer held back:
``delay_answer``), a create the server sits on before creating anything (``slow``), a poll
whose answer is pending, a download under way (``throttle_download``), and an upload whose
body is still being sent (``throttle_upload`` on a file larger than the socket buffers).

Each case runs the real daemon as a subprocess against the emulator in this process, holds
the one request open for a minute, sends SIGTERM once the emulator has the request, and
times the exit. The pool's worker threads are started by the (daemon) scheduler thread and
so are daemon threads themselves; Python's exit still joins them (concurrent.futures'
atexit hook), which is what made a pending create take 28 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import wait_until, write_config

from daemon.emulator import EmulatorOptions, EmulatorServer, Fault

ROOT = Path(__file__).resolve().parents[1]
HOLD_S = 60.0  # every held request outlasts the 10 s promise many times over


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    options = EmulatorOptions(premium=True, processing_s=0.5, rate_limit=False)
    with EmulatorServer(options, host="127.0.0.1", port=0) as server:
        yield server


def calls(server: EmulatorServer, endpoint: str) -> int:
    counted = server.stats["calls"]
    assert isinstance(counted, dict)
    return int(counted.get(endpoint, 0))


CASES: dict[str, tuple[Fault, str]] = {
    "create answer pending": (
        Fault(kind="delay_answer", endpoint="create", times=None, delay_s=HOLD_S),
        "create",
    ),
    "create held before it is made": (
        Fault(kind="slow", endpoint="create", times=None, delay_s=HOLD_S),
        "create",
    ),
    "poll answer pending": (
        Fault(kind="delay_answer", endpoint="get", times=None, delay_s=HOLD_S),
        "get",
    ),
    "upload body being sent": (
        Fault(kind="throttle_upload", endpoint="create", times=None, delay_s=HOLD_S * 20),
        "create",
    ),
    "download under way": (
        Fault(kind="throttle_download", endpoint="download", times=None, delay_s=HOLD_S),
        "download",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sigterm_exits_within_10_s(
    case: str, tmp_path: Path, emulator: EmulatorServer, audio_file: Callable[..., Path]
) -> None:
    fault, endpoint = CASES[case]
    emulator.add_fault(fault)
    # mid-body needs more than the loopback socket buffers hold: 60 s of WAV, 10 MB
    audio_file("in/song.wav", seconds=60.0 if fault.kind == "throttle_upload" else 1.0)
    config = write_config(tmp_path, emulator.base_url)
    log = tmp_path / "daemon.log"
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=dict(os.environ))
    try:
        wait_until(lambda: calls(emulator, endpoint) >= 1, f"the daemon's first {endpoint}")
        if endpoint == "create" and fault.kind == "delay_answer":
            wait_until(lambda: len(emulator.jobs) == 1, "the job to exist at MVSEP")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=40)
        took_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{case}: SIGTERM to exit {took_s:.2f} s")
    tail = log.read_text(errors="replace")[-3000:]
    assert code == 0, tail
    assert took_s < 10.0, tail
    if fault.kind == "throttle_upload":  # stopped mid-body: the create was never made
        assert len(emulator.jobs) == 0 and "upload stopped" in tail, tail
