"""`separate` interrupted with Ctrl-C (defect 2 of issue 8): only what has not started at
MVSEP is cancelled (refunded); a job already processing stays resumable and the rerun
downloads it without a second create, even when the journal last saw it waiting.

A real `mvsep-watch separate` subprocess gets a real SIGINT. The emulator runs in this
process on a manual clock, one job at a time (``over_limit="queue"``): the test decides
when the first job finishes and the second starts, so that at the Ctrl-C the second is
processing at MVSEP while the journal still says "waiting" (the next poll of a waiting
job is seconds away), and the third is still waiting there.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until
from test_separate_cli import StderrLines, separate

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.testing import ManualClock
from daemon.jobs import Job
from daemon.journal import Journal

PROCESSING_S = 10.0


@pytest.fixture
def emulator() -> Iterator[tuple[EmulatorServer, ManualClock]]:
    clock = ManualClock()
    options = EmulatorOptions(
        premium=True,
        processing_s=PROCESSING_S,
        parallel_limit=1,
        over_limit="queue",
        rate_limit=False,
    )
    with EmulatorServer(options, host="127.0.0.1", port=0, clock=clock) as server:
        yield server, clock


def journal_jobs(tmp: Path) -> list[Job]:
    path = tmp / "journal.sqlite"
    if not path.exists():
        return []
    with Journal(path, read_only=True) as journal:
        return sorted(journal.recent_jobs(100), key=lambda j: j.id)


def emulated_states(emu: EmulatorServer) -> dict[str, str]:
    """Upload name (the file's name after the nonce) → its state at MVSEP."""
    return {job.upload_name.split("-", 1)[1]: job.state for job in emu.jobs.values()}


def finish(proc: subprocess.Popen[str], timeout_s: float) -> None:
    try:
        proc.wait(timeout=timeout_s)
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_ctrl_c_cancels_only_what_has_not_started_and_the_rerun_downloads_the_rest(
    tmp_path: Path, audio_file: Any, emulator: tuple[EmulatorServer, ManualClock]
) -> None:
    emu, clock = emulator
    songs = [audio_file(f"{name}.wav", seconds=1.0 + i / 10)
             for i, name in enumerate(("first", "second", "third"))]  # fmt: skip
    out = tmp_path / "out"
    args = (*map(str, songs), "--sep-type", "40", "--format", "wav16", "--out", str(out))
    proc = separate(emu.base_url, tmp_path, *args)
    stderr = StderrLines(proc)
    try:
        # all three at MVSEP (in the order their uploads arrived): one processing, two
        # waiting behind it, and the journal has seen each one's status
        wait_until(lambda: len(emu.jobs) == 3, "three creates")
        wait_until(
            lambda: (
                sorted(str(j.mvsep_status) for j in journal_jobs(tmp_path))
                == ["processing", "waiting", "waiting"]
            ),
            "the first status of each job",
        )
        clock.advance(PROCESSING_S + 0.5)  # the first is done, the second starts
        at_mvsep = {state: name for name, state in emulated_states(emu).items()}
        assert sorted(at_mvsep) == ["done", "processing", "waiting"]
        started, waiting = at_mvsep["processing"], at_mvsep["waiting"]
        seen = {j.source.path.name: j.mvsep_status for j in journal_jobs(tmp_path)}
        assert seen[started] == "waiting"  # not polled since it started
        proc.send_signal(signal.SIGINT)
        finish(proc, timeout_s=60)
    finally:
        proc.kill()
    log = stderr.text()
    assert proc.returncode == 130, log[-3000:]
    states = emulated_states(emu)
    assert states[waiting] == "cancelled"  # had not started: refunded
    assert states[started] == "processing"  # already paid for: left running
    assert emu.stats["cancels"] == 1
    message = log[log.index("interrupted.") :]
    assert f"cancelled, not started at MVSEP (nothing charged): {waiting}" in message
    assert "run the same command again to download" in message
    assert f"{started} (started at MVSEP)" in message
    assert f"{waiting} (" not in message

    clock.advance(PROCESSING_S)  # the second is done too
    rerun = separate(emu.base_url, tmp_path, *args)
    stdout, rerun_log = rerun.communicate(timeout=120)
    assert len(emu.jobs) == 3  # no second create
    for name in {"first.wav", "second.wav", "third.wav"} - {waiting}:
        stem_dir = out / name.removesuffix(".wav")
        for stem in ("Vocals", "Instrumental"):
            path = stem_dir / f"{stem_dir.name} - {stem}.wav"
            assert path.is_file() and str(path) in stdout, rerun_log[-3000:]
    assert f"{waiting}: cancelled" in stdout
    assert "result discarded" not in stdout + rerun_log
    assert rerun.returncode == 1  # the cancelled one is reported, not separated


def test_a_rerun_resumes_a_job_an_earlier_version_left_with_a_ctrl_c_cancel_request(
    tmp_path: Path, audio_file: Any, emulator: tuple[EmulatorServer, ManualClock]
) -> None:
    """Journals written before this fix hold "interrupted (Ctrl-C)" cancel requests on jobs
    already processing at MVSEP; running the command again resumes them (no discard)."""
    emu, clock = emulator
    song = audio_file("old.wav", seconds=1.0)
    out = tmp_path / "out"
    args = (str(song), "--sep-type", "40", "--format", "wav16", "--out", str(out))
    first = separate(emu.base_url, tmp_path, *args)
    try:
        wait_until(
            lambda: [j.mvsep_status for j in journal_jobs(tmp_path)] == ["processing"],
            "the job processing at MVSEP",
        )
    finally:
        first.kill()
        first.communicate(timeout=30)
    with Journal(tmp_path / "journal.sqlite") as journal:  # what the old Ctrl-C left
        (job,) = journal.recent_jobs(10)
        journal.request_cancel(job.id, "interrupted (Ctrl-C)", processing="discard")
        assert journal.get(job.id).cancel_requested == "interrupted (Ctrl-C)"
    clock.advance(PROCESSING_S + 1)
    rerun = separate(emu.base_url, tmp_path, *args)
    stdout, log = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, log[-3000:]
    assert "result discarded" not in stdout + log
    assert len(emu.jobs) == 1 and len(list(out.rglob("*.wav"))) == 2
