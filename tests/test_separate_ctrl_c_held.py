"""Ctrl-C on `separate` while a request is held open ends the command within 10 s.

The same five moments as `run`'s SIGTERM test (tests/test_sigterm_states.py): a create whose
answer is pending, a create the server sits on, a poll whose answer is pending, an upload
body still being sent, a download under way. Each request is held for a minute; a worker
inside it must not keep the process alive past the promise (Python's exit joins the pool's
workers), and what has not started at MVSEP is still cancelled, the rest kept resumable.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until
from test_separate_cli import StderrLines, separate
from test_sigterm_states import CASES, calls


@pytest.mark.parametrize("case", sorted(CASES))
def test_ctrl_c_ends_separate_within_10_s(
    case: str, tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    fault, endpoint = CASES[case]
    emulator = make_emulator(premium=True, processing_s=0.5, rate_limit=False)
    emulator.add_fault(fault)
    # mid-body needs more than the loopback socket buffers hold: 60 s of WAV, 10 MB
    song = audio_file("song.wav", seconds=60.0 if fault.kind == "throttle_upload" else 1.0)
    proc = separate(emulator.base_url, tmp_path, str(song), "--sep-type", "40",
                    "--out", str(tmp_path / "out"))  # fmt: skip
    stderr = StderrLines(proc)
    try:
        wait_until(lambda: calls(emulator, endpoint) >= 1, f"the command's first {endpoint}")
        if endpoint == "create" and fault.kind == "delay_answer":
            wait_until(lambda: len(emulator.jobs) == 1, "the job to exist at MVSEP")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=40)
        took_s = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    text = stderr.text()[-3000:]
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    print(f"{case}: exit {code} in {took_s:.2f} s")
    assert code == 130, text
    assert took_s < 10.0, text
    assert "interrupted" in text, text
