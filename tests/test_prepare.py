"""The ``ready`` step (``daemon.engine.prepare``) on real files and a real journal: a missing
inbox is waited for (a look, not an attempt), an input that cannot be read is tried again
later with a warning, an input removed on its own is cancelled, a real WAV is hashed and
priced. The client is never called (a closed loopback port)."""

from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon import media
from daemon.clock import ManualClock
from daemon.engine import EngineSettings, prepare
from daemon.engine.context import Context
from daemon.engine.identity import sha256_of
from daemon.jobs import Job, JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.media import AudioProbe
from daemon.mvsep.client import MvsepClient


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    clock = ManualClock()
    journal = Journal(tmp_path / "state" / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")
    context = Context(journal=journal, client=client, settings=EngineSettings(), clock=clock,
                      rng=random.Random(5), staging_dir=tmp_path / "staging",
                      probe=media.probe)  # fmt: skip
    try:
        yield context
    finally:
        journal.close()
        client.close()


def ready_job(ctx: Context, song: Path) -> Job:
    source = SourceFile(
        path=song, inbox="main", relative_path=song.name, preset="vocals",
        request=JobRequest(40, {}, 2, "BS Roformer", price_coefficient=1.5),
        output_dir=song.parent.parent / "out", output_template="{name}/{stem}.{ext}",
        failed_dir=song.parent / "_failed",
    )  # fmt: skip
    stat = song.stat()
    job, _ = ctx.journal.record_seen(source, size=stat.st_size, mtime=stat.st_mtime)
    return job


def test_a_real_wav_is_hashed_and_priced(ctx: Context, audio_file: Callable[..., Path]) -> None:
    song = audio_file("in/song.wav", seconds=80.0, sample_rate=8000, channels=1)
    job = ready_job(ctx, song)
    prepare.prepare(ctx, job)
    done = ctx.journal.get(job.id)
    assert done.state is JobState.READY and done.sha256 == sha256_of(song)
    assert done.estimated_credits == 2.0  # floor(80 s · 1.5 / 60)


def test_a_missing_inbox_is_waited_for_and_is_not_an_attempt(
    ctx: Context, audio_file: Callable[..., Path]
) -> None:
    song = audio_file("in/song.wav", seconds=0.5)
    job = ready_job(ctx, song)
    shutil.rmtree(song.parent)  # the share went away
    prepare.prepare(ctx, job)
    waiting = ctx.journal.get(job.id)
    assert waiting.state is JobState.RETRY_WAIT and waiting.resume_state is JobState.READY
    assert "inbox folder" in (waiting.last_error or "") and waiting.attempts == 0


def test_an_input_removed_on_its_own_is_cancelled(
    ctx: Context, audio_file: Callable[..., Path]
) -> None:
    song = audio_file("in/song.wav", seconds=0.5)
    job = ready_job(ctx, song)
    song.unlink()
    prepare.prepare(ctx, job)
    gone = ctx.journal.get(job.id)
    assert gone.state is JobState.CANCELLED and "removed before it was sent" in (
        gone.last_error or ""
    )


def test_an_input_that_cannot_be_read_is_tried_again_with_a_warning(
    ctx: Context, audio_file: Callable[..., Path]
) -> None:
    song = audio_file("in/song.wav", seconds=0.5)
    job = ready_job(ctx, song)

    def probe_then_replaced(path: Path) -> AudioProbe:
        """The real probe; then the file is replaced by a folder of the same name (a sync
        tool's rename dance) before it is hashed: the read fails with a real OSError."""
        result = media.probe(path)
        path.unlink()
        path.mkdir()
        return result

    ctx.probe = probe_then_replaced
    with capture_logs() as logs:
        prepare.prepare(ctx, job)
    waiting = ctx.journal.get(job.id)
    assert waiting.state is JobState.RETRY_WAIT and waiting.attempts == 1
    warned: list[dict[str, Any]] = [
        e for e in logs if e["event"] == "input could not be read; trying again later"
    ]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["job_id"] == job.id and warned[0]["file"] == str(song)


# An input (or its whole inbox) that vanishes while it is read: before, the probe's "No such
# file" was taken as "not an audio file" and the job failed (the unmounted-inbox daemon test
# hit it under load). The probe is the real one; the wrapper only picks the moment.


def vanishing(before_probe: Callable[[], None]) -> Callable[[Path], AudioProbe]:
    def probe(path: Path) -> AudioProbe:
        before_probe()
        return media.probe(path)

    return probe


def test_an_inbox_unmounted_while_the_input_is_probed_waits_for_the_share(
    ctx: Context, audio_file: Callable[..., Path], tmp_path: Path
) -> None:
    song = audio_file("in/song.wav", seconds=1.0)
    job = ready_job(ctx, song)
    away = tmp_path / "in-away"
    racing = dataclasses.replace(ctx, probe=vanishing(lambda: song.parent.rename(away)))
    prepare.prepare(racing, job)
    after = ctx.journal.get(job.id)
    assert after.state is JobState.RETRY_WAIT, after.last_error
    assert "missing" in (after.last_error or "")
    away.rename(song.parent)  # the share is back: the same job goes on
    assert song.is_file()


def test_an_input_removed_while_it_is_probed_is_cancelled_not_failed(
    ctx: Context, audio_file: Callable[..., Path]
) -> None:
    song = audio_file("in/song.wav", seconds=1.0)
    job = ready_job(ctx, song)
    racing = dataclasses.replace(ctx, probe=vanishing(song.unlink))
    prepare.prepare(racing, job)
    after = ctx.journal.get(job.id)
    assert after.state is JobState.CANCELLED, after.last_error
    assert not (song.parent / "_failed").exists()


def test_a_real_non_audio_file_still_fails(ctx: Context, tmp_path: Path) -> None:
    junk = tmp_path / "in" / "notes.wav"
    junk.parent.mkdir(parents=True)
    junk.write_text("not audio at all\n" * 100)
    job = ready_job(ctx, junk)
    prepare.prepare(ctx, job)
    assert ctx.journal.get(job.id).state is JobState.FAILED
    shutil.rmtree(junk.parent / "_failed", ignore_errors=True)
