"""Issue 9 item 2: identical files dropped together were paid twice (dedup only saw finished
jobs). A second job with the same audio and request waits for the first (it is not sent)
and is filed from its result. Real emulator (two slots: both could be sent at once), real
files, real journal."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon.jobs import JobState


def test_two_identical_files_dropped_at_once_cost_one_create(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, processing_s=0.5)
    with rig(tmp_path, emu) as r:
        first = audio_file("in/song.wav", seconds=0.8)
        second = r.inbox / "copy of song.wav"
        shutil.copyfile(first, second)
        ids = [r.submit(first), r.submit(second)]
        assert r.engine.run_until_idle(40)
        jobs = [r.job(i) for i in ids]
        assert [j.state for j in jobs] == [JobState.FILED, JobState.FILED]
        assert r.creates() == 1  # one paid separation
        sent = [j for j in jobs if j.mvsep_hash is not None]
        waited = [j for j in jobs if j.duplicate_of is not None]
        assert len(sent) == 1 and len(waited) == 1
        assert waited[0].duplicate_of == sent[0].id
        assert waited[0].nonce is None  # never sent, not even attempted
        for job in jobs:
            assert job.outputs and all(Path(p).is_file() for p in job.outputs)


def test_a_waiting_twin_is_sent_itself_when_the_first_job_fails(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    from daemon.emulator import Fault

    emu = make_emulator(premium=True, processing_s=0.5)
    emu.add_fault(Fault(kind="job_failed", endpoint="create", times=1, message="GPU fell over"))
    with rig(tmp_path, emu) as r:
        first = audio_file("in/song.wav", seconds=0.8)
        second = r.inbox / "copy of song.wav"
        shutil.copyfile(first, second)
        ids = [r.submit(first), r.submit(second)]
        assert r.engine.run_until_idle(40)
        states = sorted(r.job(i).state.value for i in ids)
        assert states == ["failed", "filed"]
        assert r.creates() == 2  # the twin went on by itself once the first had no result
