"""A WAV (FLAC, MP3, Ogg) shorter than its header says: a copy that stalled, or a damaged file.

A slow SMB or Wi-Fi copy can pause for longer than the settle time; the watcher then
reports the half-written file. It must not be failed (moved away mid-copy) nor sent: it is
checked again while it changed recently, and when the copy goes on the newer version
replaces the waiting job. A file that stays cut off fails with its reason. Real engine,
journal and emulator; real files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_e2e_daemon import inbox, wait_for_jobs, write_config
from test_engine_rig import rig

from daemon.config import load_settings
from daemon.jobs import JobState
from daemon.service import Daemon

S = JobState


def half_copied(audio_file: Callable[..., Path], target: Path) -> bytes:
    """Write the first half of a real WAV to ``target``; return the whole file's bytes."""
    whole = audio_file(f"staging/{target.name}", seconds=4.0).read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(whole[: len(whole) // 2])
    return whole


@pytest.mark.parametrize("name", ["song.wav", "song.flac", "song.mp3", "song.ogg"])
def test_stalled_copy_waits_and_the_finished_file_is_sent_once(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path], name: str
) -> None:
    emu = make_emulator(processing_s=0.2)
    with rig(tmp_path, emu, cut_off_recheck_s=0.2) as r:
        song = r.inbox / name
        whole = half_copied(audio_file, song)
        first = r.submit(song)
        r.engine.start()
        waiting = r.wait_state(first, S.RETRY_WAIT)
        assert "cut off" in (waiting.last_error or "")
        assert "copy may still be under way" in (waiting.last_error or "")
        # checked again while it waits, never sent, never moved
        r.recorder.wait_for(lambda: sum(e.kind == "deferred" for e in r.journal.events(first)) >= 2)
        assert r.job(first).attempts == 0  # a look again is not an attempt
        assert r.creates() == 0 and song.exists()

        with open(song, "ab") as out:  # the copy goes on and finishes
            out.write(whole[len(whole) // 2 :])
        second = r.submit(song)  # as the watcher reports the new version
        assert r.engine.run_until_idle(60)

        old, new = r.job(first), r.job(second)
        assert old.state is S.CANCELLED and "superseded" in (
            old.cancel_requested or old.last_error or ""
        )
        assert new.state is S.FILED, new.last_error
        assert r.creates() == 1  # only the finished file was sent
        assert song.read_bytes() == whole  # kept, whole
        assert not (r.inbox / "_failed").exists()


def test_cut_off_file_that_stays_cut_off_fails_with_its_reason(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.2)
    with rig(tmp_path, emu, cut_off_wait_s=1.5, cut_off_recheck_s=0.2) as r:
        song = r.inbox / "broken.wav"
        half_copied(audio_file, song)
        job_id = r.submit(song)
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FAILED and "cut off" in (job.last_error or "")
        kinds = [e.kind for e in r.journal.events(job_id)]
        assert "deferred" in kinds  # it was given the chance to finish first
        assert r.creates() == 0
        assert not song.exists() and (r.inbox / "_failed" / "broken.wav").exists()
        report = (r.inbox / "_failed" / "broken.wav.error.txt").read_text(encoding="utf-8")
        assert "cut off" in report


def test_old_cut_off_file_fails_at_once(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.2)
    with rig(tmp_path, emu) as r:  # default: waits 15 minutes after the last change
        song = r.inbox / "old.wav"
        half_copied(audio_file, song)
        an_hour_ago = time.time() - 3600
        os.utime(song, (an_hour_ago, an_hour_ago))
        job_id = r.submit(song)
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FAILED and "cut off" in (job.last_error or "")
        assert "deferred" not in [e.kind for e in r.journal.events(job_id)]
        assert r.creates() == 0


def test_daemon_copy_pausing_longer_than_settle_is_sent_once_when_complete(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The whole daemon: a copy pauses past the settle time, then finishes."""
    emulator = make_emulator(premium=True, processing_s=0.2, rate_limit_per_min=1000)
    box = inbox(tmp_path, "music", "vocals", settle_s=0.5)
    settings, _ = load_settings(write_config(tmp_path, emulator.base_url, [box]), env={})
    daemon = Daemon(settings, config_label="test")
    daemon.start()
    try:
        assert daemon.journal is not None
        song = tmp_path / "in" / "music" / "long copy.wav"
        whole = half_copied(audio_file, song)  # ... and the copy stalls
        deadline = time.monotonic() + 60
        while not any(j.state is S.RETRY_WAIT for j in daemon.journal.recent_jobs()):
            assert time.monotonic() < deadline, "the half file was never seen and held back"
            time.sleep(0.1)
        with open(song, "ab") as out:  # the copy goes on and finishes
            out.write(whole[len(whole) // 2 :])
        jobs = wait_for_jobs(daemon, 2, timeout_s=120)
    finally:
        daemon.stop()
    assert sorted(j.state.value for j in jobs) == ["cancelled", "filed"], jobs
    assert len(emulator.jobs) == 1  # one create: the finished file
    stems = list((tmp_path / "out" / "music").rglob("*.wav"))
    assert len(stems) == 2 and not list((tmp_path / "out").rglob("*.part"))
    assert not (tmp_path / "in" / "music" / "_failed").exists()
