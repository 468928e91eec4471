"""The ``downloading`` step (``daemon.engine.deliver``) on real files and a real journal:
a restart after the paths were planned files each stem once (a stem already moved is not
suffixed, a stale ``.part`` is cleaned); ``skip`` keeps an existing stem; an empty stem
is a retry-later error; a stop mid-delivery leaves the job to resume; a file that is not
our sidecar at the sidecar's name is never overwritten. Stems come from local files (a job
filed from an earlier result), so the client is never called (a closed loopback port)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import media
from daemon.clock import ManualClock
from daemon.engine import EngineSettings, deliver
from daemon.engine.context import Context
from daemon.jobs import Job, JobRequest, JobState, ResultFile, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient

STEMS = {"vocals": b"V" * 1000, "other": b"O" * 2000}


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")
    context = Context(journal=journal, client=client, settings=EngineSettings(), clock=clock,
                      rng=random.Random(3), staging_dir=tmp_path / "staging",
                      probe=media.probe)  # fmt: skip
    try:
        yield context
    finally:
        journal.close()
        client.close()


def downloading_job(ctx: Context, tmp: Path, **changes: object) -> Job:
    """A job in ``downloading`` whose stems are earlier outputs outside the output folder."""
    earlier = tmp / "earlier"
    earlier.mkdir(exist_ok=True)
    files = []
    for stem, data in STEMS.items():
        (earlier / f"{stem}.wav").write_bytes(data)
        files.append(
            ResultFile(type=stem, download=f"song_{stem}.wav", local=str(earlier / f"{stem}.wav"))
        )
    song = tmp / "in" / "song.wav"
    song.parent.mkdir(exist_ok=True)
    song.write_bytes(b"RIFF....WAVE")
    (tmp / "out").mkdir(exist_ok=True)
    fields: dict[str, object] = {
        "path": song, "inbox": "main", "relative_path": "song.wav", "preset": "vocals",
        "request": JobRequest(40, {}, 2, "BS Roformer"), "output_dir": tmp / "out",
        "output_template": "{name}/{stem}.{ext}", "failed_dir": tmp / "in" / "_failed",
        "after_success": "keep",
    }  # fmt: skip
    fields.update(changes)
    job, _ = ctx.journal.record_seen(SourceFile(**fields), size=12, mtime=1.0)  # type: ignore[arg-type]
    return ctx.journal.mark_duplicate(job.id, of_job=job.id, files=files, sha256="a" * 64)


def test_a_restart_after_planning_files_each_stem_once(ctx: Context, tmp_path: Path) -> None:
    job = downloading_job(ctx, tmp_path)
    deliver._stage_all(ctx, job)  # the first run staged both stems, planned, then died
    job = deliver._plan(ctx, job)
    assert job.planned_outputs is not None
    vocals, other = (Path(p) for p in job.planned_outputs)
    staged_vocals, _ = deliver.staged_paths(ctx, job)
    vocals.parent.mkdir(parents=True)
    staged_vocals.replace(vocals)  # ... after moving the first stem into place
    Path(str(other) + ".part").write_bytes(b"half")  # ... in the middle of the second
    deliver.download_and_file(ctx, job)
    done = ctx.journal.get(job.id)
    assert done.state is JobState.FILED and done.outputs == (str(vocals), str(other))
    assert vocals.read_bytes() == STEMS["vocals"] and other.read_bytes() == STEMS["other"]
    names = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert names == ["other.wav", "song", "song.mvsep.json", "vocals.wav"]  # no (2), no .part
    assert not deliver.staging_dir(ctx, job).exists()


def test_skip_keeps_an_existing_stem_and_files_the_rest(ctx: Context, tmp_path: Path) -> None:
    job = downloading_job(ctx, tmp_path, on_collision="skip")
    mine = tmp_path / "out" / "song" / "vocals.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own vocals")
    job = deliver._plan(ctx, job)  # planned, then a restart stages again
    deliver.download_and_file(ctx, job)
    done = ctx.journal.get(job.id)
    assert done.state is JobState.FILED
    assert done.outputs == (str(tmp_path / "out" / "song" / "other.wav"),)
    assert mine.read_bytes() == b"the user's own vocals"


def test_an_empty_stem_is_tried_again_later(ctx: Context, tmp_path: Path) -> None:
    job = downloading_job(ctx, tmp_path)
    (tmp_path / "earlier" / "other.wav").write_bytes(b"")
    deliver.download_and_file(ctx, job)
    waiting = ctx.journal.get(job.id)
    assert waiting.state is JobState.RETRY_WAIT and waiting.resume_state is JobState.DOWNLOADING
    assert "downloaded empty" in (waiting.last_error or "") and waiting.attempts == 1
    assert not any(p.stat().st_size == 0 for p in deliver.staging_dir(ctx, job).iterdir())


def test_a_stop_mid_delivery_leaves_the_job_to_resume(ctx: Context, tmp_path: Path) -> None:
    job = downloading_job(ctx, tmp_path)
    ctx.stopping.set()
    deliver.download_and_file(ctx, job)
    assert ctx.journal.get(job.id).state is JobState.DOWNLOADING
    ctx.stopping.clear()
    deliver.download_and_file(ctx, ctx.journal.get(job.id))
    assert ctx.journal.get(job.id).state is JobState.FILED


def test_a_file_at_the_sidecars_name_that_is_not_ours_is_kept(ctx: Context, tmp_path: Path) -> None:
    job = downloading_job(ctx, tmp_path)
    foreign = tmp_path / "out" / "song" / "song.mvsep.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("notes the user keeps here, not JSON")
    deliver.download_and_file(ctx, job)
    assert foreign.read_text() == "notes the user keeps here, not JSON"
    ours = json.loads((foreign.parent / "song.mvsep (2).json").read_text())
    assert ours["job_id"] == job.id and len(ours["outputs"]) == 2
