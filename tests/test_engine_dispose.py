"""What happens to the input once its job ended (``daemon.engine.dispose``): real files, a
real SQLite journal; the client is never called (pointed at a closed loopback port)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from daemon import media
from daemon.clock import ManualClock
from daemon.engine import EngineSettings
from daemon.engine.context import Context
from daemon.engine.dispose import dispose_filed_source, fail, finish_disposal
from daemon.jobs import Job, JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")
    try:
        yield Context(journal=journal, client=client, settings=EngineSettings(), clock=clock,
                      rng=random.Random(1), staging_dir=tmp_path / "staging",
                      probe=media.probe)  # fmt: skip
    finally:
        journal.close()
        client.close()


def job_for(ctx: Context, tmp_path: Path, **changes: object) -> Job:
    path = tmp_path / "in" / "song.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    source = SourceFile(
        path=path,
        inbox="main",
        relative_path="song.wav",
        preset="vocals",
        request=JobRequest(40, {}, 2, "BS Roformer"),
        output_dir=tmp_path / "out",
        output_template="{name}/{stem}.{ext}",
        failed_dir=tmp_path / "in" / "_failed",
    )
    job, _ = ctx.journal.record_seen(
        replace(source, **changes), size=12, mtime=path.stat().st_mtime
    )
    return job


@pytest.mark.parametrize(
    ("mode", "how", "left"),
    [("keep", "kept", True), ("delete", "deleted", False), ("archive", "archived:", False)],
)
def test_a_filed_input_is_kept_deleted_or_archived(
    ctx: Context, tmp_path: Path, mode: str, how: str, left: bool
) -> None:
    job = job_for(ctx, tmp_path, after_success=mode)
    done = dispose_filed_source(ctx, job)
    assert (done.source_disposed or "").startswith(how)
    assert job.source.path.exists() is left
    if mode == "archive":
        assert (tmp_path / "in" / "_processed" / "song.wav").exists()
    assert dispose_filed_source(ctx, done) == done  # idempotent: disposed once


def test_an_archived_input_already_gone_is_recorded_as_missing(
    ctx: Context, tmp_path: Path
) -> None:
    job = job_for(ctx, tmp_path, after_success="archive")
    job.source.path.unlink()
    assert dispose_filed_source(ctx, job).source_disposed == "missing"


def test_a_failed_input_moves_to_the_failed_folder_with_its_reason(
    ctx: Context, tmp_path: Path
) -> None:
    job = fail(ctx, job_for(ctx, tmp_path), "not an audio file: text")
    assert job.state is JobState.FAILED
    assert (job.source_disposed or "").startswith("failed:")
    report = (tmp_path / "in" / "_failed" / "song.wav.error.txt").read_text()
    assert "not an audio file: text" in report and "none (never created at MVSEP)" in report
    assert finish_disposal(ctx, job) == job  # nothing left to do


def test_a_failed_input_that_must_stay_or_is_gone(ctx: Context, tmp_path: Path) -> None:
    kept = fail(ctx, job_for(ctx, tmp_path, move_failed=False), "bad")
    assert kept.source_disposed == "kept" and kept.source.path.exists()
    other = job_for(ctx, tmp_path / "b")
    other.source.path.unlink()
    assert fail(ctx, other, "bad").source_disposed == "missing"


def test_finish_disposal_completes_what_a_crash_cut_off(ctx: Context, tmp_path: Path) -> None:
    job = ctx.journal.mark_failed(job_for(ctx, tmp_path).id, "damaged")
    assert job.source_disposed is None  # the crash came between the two steps
    done = finish_disposal(ctx, job)
    assert (done.source_disposed or "").startswith("failed:")
