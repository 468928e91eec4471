"""Issue 9 item 1, the engine's side: a "removed" report for a path that holds a file again
(a new version put over the old one) cancels nothing, and a failed job whose input was
replaced leaves the new file where it is (no move into ``_failed``). Real emulator, real
files, real journal."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon.emulator import Fault
from daemon.emulator.audio import write_test_audio
from daemon.jobs import JobState


def _put_over(path: Path, seconds: float) -> bytes:
    other = path.parent.parent / "incoming.wav"  # written outside the inbox
    write_test_audio(other, seconds, sample_rate=22050)
    data = other.read_bytes()
    os.replace(other, path)
    return data


def test_a_removal_report_for_a_replaced_path_cancels_nothing(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, waiting_s=30.0)
    with rig(tmp_path, emu) as r:
        song = audio_file("in/s2.wav", seconds=0.5)
        job_id = r.submit(song)
        r.engine.start()
        r.recorder.wait_for(lambda: r.job(job_id).mvsep_status == "waiting", 20)
        _put_over(song, 0.7)
        r.engine.cancel_path(song, "removed from the inbox")
        job = r.job(job_id)
        assert job.cancel_requested is None and job.state is JobState.QUEUED
        assert emu.stats["cancels"] == 0
        song.unlink()  # now it really is gone: the removal cancels (the check can fail)
        r.engine.cancel_path(song, "removed from the inbox")
        r.wait_state(job_id, JobState.CANCELLED, timeout_s=20)


def test_a_failed_job_leaves_the_file_that_replaced_its_input(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, waiting_s=1.0)
    emu.add_fault(Fault(kind="job_failed", endpoint="create", times=1, message="GPU fell over"))
    with rig(tmp_path, emu) as r:
        song = audio_file("in/s2.wav", seconds=0.5)
        job_id = r.submit(song)
        r.engine.start()
        r.recorder.wait_for(lambda: r.job(job_id).mvsep_hash is not None, 20)
        new_bytes = _put_over(song, 0.7)
        job = r.wait_state(job_id, JobState.FAILED, timeout_s=30)
        r.recorder.wait_for(lambda: r.job(job_id).source_disposed is not None, 20)
        assert r.job(job_id).source_disposed == "replaced"
        assert song.read_bytes() == new_bytes  # left for its own job
        assert not (r.inbox / "_failed").exists() or not list((r.inbox / "_failed").iterdir())
        assert job.mvsep_hash is not None
