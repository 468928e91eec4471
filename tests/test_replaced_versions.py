"""Two versions of one file at one path (issue 9, found by ``bench/soak.py``).

- A file replaced between the job's look and its hash, or between its hash and its upload, is
  never sent for that job: the job ends "superseded" (nothing sent) and the new version is its
  own job. What a job hashes and uploads is the one file it checked (an open handle).
- A job whose file was replaced goes on when the path is later emptied (the newer version
  archived or deleted): only the newest version's job is cancelled as removed.
- Two jobs of one path that file at once never choose the same output names.

Real files, a real journal, the emulator over loopback (through the engine rig).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon.clock import SystemClock
from daemon.emulator.audio import write_test_audio
from daemon.engine import deliver, prepare, submit
from daemon.engine.context import Context
from daemon.jobs import Job, JobState, ResultFile
from daemon.media import probe


def _ctx(r: Any, tmp: Path) -> Context:
    return Context(journal=r.journal, client=r.client, settings=r.settings, clock=SystemClock(),
                   rng=random.Random(5), staging_dir=tmp / "staging", probe=probe)  # fmt: skip


def _put_over(path: Path, seconds: float) -> bytes:
    """Other audio put over ``path`` at once (a finished copy renamed into place)."""
    other = path.with_name("incoming.tmp")
    write_test_audio(other, seconds, fmt="WAV")
    data = other.read_bytes()
    assert data != path.read_bytes()
    os.replace(other, path)
    return data


def test_a_file_replaced_before_its_hash_is_superseded_unhashed(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    with rig(tmp_path, make_emulator()) as r:
        song = audio_file("in/a.wav", seconds=0.5)
        job_id = r.submit(song)  # seen: A's size and mtime
        _put_over(song, 0.8)  # B, before the engine hashed A
        prepare.prepare(_ctx(r, tmp_path), r.job(job_id))
        job = r.job(job_id)
        assert job.state is JobState.CANCELLED and job.sha256 is None
        assert "superseded" in (job.last_error or "") and "nothing sent" in (job.last_error or "")
        assert r.creates() == 0


def test_a_file_replaced_after_its_hash_is_not_sent_for_that_job(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The job hashed A and journaled its intent; B is put there before the upload: the job
    must not send B under A's hash (that filed B's stems with A's sidecar)."""
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        ctx = _ctx(r, tmp_path)
        song = audio_file("in/a.wav", seconds=0.5)
        job_id = r.submit(song)
        prepare.prepare(ctx, r.job(job_id))
        job = r.journal.claim_next_ready(submit.new_nonce)
        assert job is not None and job.state is JobState.SUBMITTING and job.sha256 is not None
        _put_over(song, 0.8)
        assert submit.upload(ctx, job) is submit.Upload.NOT_SENT
        after = r.job(job_id)
        assert after.state is JobState.CANCELLED and "superseded" in (after.last_error or "")
        assert r.creates() == 0 and emu.stats["calls"].get("create", 0) == 0


def test_an_open_handle_uploads_the_version_it_holds(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The client's create from an open file sends that file, even once another is at its
    path (what the engine relies on after checking the handle)."""
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        song = audio_file("in/a.wav", seconds=0.5)
        a_bytes = song.read_bytes()
        with open(song, "rb") as handle:
            _put_over(song, 0.8)
            r.client.create(sep_type=48, output_format=1, file=handle, upload_name="n-a.wav")
        (only,) = emu.state.jobs.values()  # the emulator's own record: the bytes it received
        assert only.input_path.read_bytes() == a_bytes and only.upload_name.endswith("a.wav")


def test_a_replaced_version_at_mvsep_goes_on_when_the_path_is_emptied(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """A is paid and waits at MVSEP; B replaces it (its own job); B leaves the path (archived
    after its job, or deleted). The removal is B's: A is not cancelled (it used to be, and
    its stems were never filed)."""
    emu = make_emulator(waiting_s=60.0, rate_limit=False)
    with rig(tmp_path, emu) as r:
        song = audio_file("in/a.wav", seconds=0.5)
        first = r.submit(song)
        r.engine.start()
        r.recorder.wait_for(lambda: r.job(first).mvsep_status == "waiting", timeout_s=30)
        _put_over(song, 0.8)
        second = r.submit(song)  # the watcher reports the new version
        song.unlink()
        r.engine.cancel_path(song, "the file was removed from its inbox")
        # the newest version's job is cancelled (by this removal, or by its prepare finding
        # its file gone first): it never reached MVSEP
        assert r.wait_state(second, JobState.CANCELLED).mvsep_hash is None
        job = r.job(first)
        assert job.state is JobState.QUEUED and job.cancel_requested is None
        assert emu.stats["cancels"] == 0


def _downloading(r: Any, ctx: Context, song: Path, mvsep_hash: str) -> Job:
    """A job of ``song`` (as it is now) in ``downloading`` with two stems to file."""
    job_id = r.submit(song)
    prepare.prepare(ctx, r.job(job_id))
    claimed = r.journal.claim_next_ready(submit.new_nonce)
    assert claimed is not None and claimed.id == job_id
    r.journal.mark_submitted(job_id, mvsep_hash)
    files = [ResultFile(type=t, url=f"http://127.0.0.1:9/{t}.wav") for t in ("vocals", "other")]
    job: Job = r.journal.mark_result_ready(job_id, files)
    assert job.state is JobState.DOWNLOADING
    return job


def test_two_versions_of_one_path_filed_at_once_never_share_an_output_name(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Both plan before either wrote a stem: the names free on disk are free for one."""
    with rig(tmp_path, make_emulator()) as r:
        ctx = _ctx(r, tmp_path)
        song = audio_file("in/a.wav", seconds=0.5)
        job_a = _downloading(r, ctx, song, "20261202-aaaa-a.wav")
        _put_over(song, 0.8)
        job_b = _downloading(r, ctx, song, "20261202-bbbb-a.wav")
        planned_a = deliver._plan(ctx, job_a).planned_outputs or ()
        planned_b = deliver._plan(ctx, job_b).planned_outputs or ()
        assert len(planned_a) == len(planned_b) == 2
        assert not set(planned_a) & set(planned_b), (planned_a, planned_b)
        assert not any(Path(p).exists() for p in (*planned_a, *planned_b))  # nothing written
