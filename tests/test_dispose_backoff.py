"""Defect 1: a disposal that keeps failing (an archive folder under a regular file, a failed
folder that cannot be created) backs off, is logged once, shows in ``status`` and is given
up after the retry deadline: the real engine against the emulator, real files and journal;
the unit tests drive ``daemon.engine.dispose`` with a manual clock."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_engine_rig import rig

from daemon import media
from daemon.clock import ManualClock
from daemon.config import load_settings
from daemon.engine import EngineSettings
from daemon.engine.context import Context
from daemon.engine.dispose import LEFT, due_in, finish_disposal
from daemon.jobs import JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.status import print_status


def _blocker(tmp: Path) -> Path:
    blocker = tmp / "not-a-folder"
    blocker.write_text("a regular file where a folder should be\n")
    return blocker


def _dispose_errors(journal: Journal, job_id: int) -> list[Any]:
    return [e for e in journal.events(job_id) if e.kind == "dispose_error"]


def test_an_archive_under_a_regular_file_backs_off_and_is_given_up(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    archive = _blocker(tmp_path) / "archive"
    with rig(tmp_path, emu, retry_base_s=0.1, retry_cap_s=0.4, retry_deadline_s=1.5) as r:
        song = audio_file("in/song.wav", seconds=0.5)
        with capture_logs() as logs:
            job_id = r.submit(song, after_success="archive", archive_dir=archive)
            # before the fix the engine retried thousands of times and never went idle
            assert r.engine.run_until_idle(20)
        job = r.job(job_id)
        assert job.state is JobState.FILED and job.outputs
        tries = _dispose_errors(r.journal, job_id)
        assert 3 <= len(tries) <= 15  # ~1.5 s of a growing delay, not a spin
        delays = [e.data["due_at"] - e.at for e in tries if e.data and "due_at" in e.data]
        assert delays[-1] > delays[0]
        assert job.source_disposed == LEFT and song.exists()  # the original stays
        assert "gave up" in (job.last_error or "") and str(song) in (job.last_error or "")
        assert r.engine.submit_file(r.source(song)) is None  # still known: not sent again
    disposal = [e for e in logs if "disposal" in e["event"]]
    levels = [e["log_level"] for e in disposal]
    assert levels.count("warning") == 1 and levels.count("error") == 1
    assert all(e["job_id"] == job_id and e["file"] == str(song) for e in disposal)
    assert not [e for e in logs if e.get("exc_info")]  # no traceback per try


def test_a_failed_folder_that_cannot_be_created_is_given_up_too(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu, retry_base_s=0.1, retry_cap_s=0.4, retry_deadline_s=1.0) as r:
        bogus = r.inbox / "notes.wav"
        bogus.write_text("this is not audio\n" * 20)
        job_id = r.submit(bogus, failed_dir=_blocker(tmp_path) / "_failed")
        assert r.engine.run_until_idle(20)
        job = r.job(job_id)
        assert job.state is JobState.FAILED and job.source_disposed == LEFT
        assert bogus.exists()
        assert 2 <= len(_dispose_errors(r.journal, job_id)) <= 12
        # the reason the job failed is kept in front of the disposal error
        assert (job.last_error or "").startswith("not an audio file")
        assert "failed folder" in (job.last_error or "")


# ---------------------------------------------------------------- manual clock


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")
    settings = EngineSettings(retry_base_s=10.0, retry_cap_s=80.0, retry_deadline_s=300.0)
    context = Context(journal=journal, client=client, settings=settings, clock=clock,
                      rng=random.Random(1), staging_dir=tmp_path / "staging",
                      probe=media.probe)  # fmt: skip
    try:
        yield context
    finally:
        context.journal.close()  # the one the test may have reopened
        client.close()


_SHA = hashlib.sha256(b"RIFF....WAVE").hexdigest()  # the input's real hash: it is the sent file


def _filed_job(ctx: Context, tmp_path: Path) -> int:
    path = tmp_path / "in" / "song.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    source = SourceFile(
        path=path, inbox="main", relative_path="song.wav", preset="vocals",
        request=JobRequest(40, {}, 2, "BS Roformer"), output_dir=tmp_path / "out",
        output_template="{name}/{stem}.{ext}", failed_dir=tmp_path / "in" / "_failed",
        after_success="archive", archive_dir=_blocker(tmp_path) / "archive",
    )  # fmt: skip
    job, _ = ctx.journal.record_seen(source, size=12, mtime=path.stat().st_mtime)
    ctx.journal.mark_prepared(job.id, _SHA, None)
    ctx.journal.apply(job.id, _duplicate_event())
    ctx.journal.mark_outputs_planned(job.id, [])
    return ctx.journal.mark_filed(job.id, []).id


def _duplicate_event() -> Any:
    from daemon.jobs import Duplicate, ResultFile

    return Duplicate(1, (ResultFile(type="vocals", local="/nowhere"),), _SHA)


def test_the_backoff_is_journaled_grows_and_survives_a_restart(
    ctx: Context, tmp_path: Path
) -> None:
    clock = ctx.clock
    assert isinstance(clock, ManualClock)
    job_id = _filed_job(ctx, tmp_path)
    waits = []
    for _ in range(4):
        job = ctx.journal.get(job_id)
        assert due_in(ctx, job) == 0.0  # due: the scheduler would try it now
        finish_disposal(ctx, job)
        waits.append(due_in(ctx, ctx.journal.get(job_id)))
        assert waits[-1] > 0  # not due again at once: no spin
        clock.advance(waits[-1])
    assert waits == sorted(waits) and waits[-1] > 2 * waits[0]
    # a restart (a new journal object on the same file) remembers the streak
    ctx.journal.close()
    ctx.journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    job = ctx.journal.get(job_id)
    assert job.source_disposed is None and "attempt 4" in (job.last_error or "")
    finish_disposal(ctx, job)
    assert "attempt 5" in (ctx.journal.get(job_id).last_error or "")
    clock.advance(400.0)  # past retry_deadline_s since the first failure
    given_up = finish_disposal(ctx, ctx.journal.get(job_id))
    assert given_up.source_disposed == LEFT and given_up.source.path.exists()
    assert due_in(ctx, given_up) == 0.0 and finish_disposal(ctx, given_up) == given_up


def test_status_shows_a_disposal_error_as_the_jobs_last_error(ctx: Context, tmp_path: Path) -> None:
    job_id = _filed_job(ctx, tmp_path)
    finish_disposal(ctx, ctx.journal.get(job_id))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mvsep]\napi_token = "t"\n[journal]\npath = "{ctx.journal.path}"\n', encoding="utf-8"
    )
    settings = load_settings(config, env={})[0]
    out = io.StringIO()
    print_status(settings, out=out)
    text = out.getvalue()
    assert "the input could not be archived into" in text and "attempt 1" in text
