"""What `status` shows (issue 8, "Logs and status"): the current state only (no stale MVSEP
status beside a terminal one), what each job cost (the history's credits), the inbox,
preset and output folder, UTC times; ``attempts`` counts attempts, not looks again.
Real journal files; the engine tests run against the emulator over loopback."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_engine_rig import rig

from daemon.config import load_settings
from daemon.jobs import JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.status import print_status


def _status(journal_path: Path, tmp: Path, *, as_json: bool = False) -> str:
    config = tmp / "config.toml"
    config.write_text(
        f'[mvsep]\napi_token = "t"\n[journal]\npath = "{journal_path}"\n', encoding="utf-8"
    )
    out = io.StringIO()
    assert print_status(load_settings(config, env={})[0], out=out, as_json=as_json) == 0
    return out.getvalue()


def _source(tmp: Path) -> SourceFile:
    path = tmp / "in" / "a.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    return SourceFile(
        path=path, inbox="music", relative_path="a.wav", preset="karaoke",
        request=JobRequest(40, {}, 1, "BS Roformer"), output_dir=tmp / "stems",
        output_template="{name}/{stem}.{ext}", failed_dir=tmp / "in" / "_failed",
    )  # fmt: skip


def test_a_terminal_job_shows_no_stale_mvsep_status(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        job, _ = journal.record_seen(_source(tmp_path), size=12, mtime=1.0)
        journal.mark_prepared(job.id, "0" * 64, 3.0)
        claimed = journal.claim_next_ready(lambda: "n0nce")
        assert claimed is not None
        journal.mark_submitted(job.id, "h-1")
        journal.mark_status(job.id, "processing")
        text = _status(path, tmp_path)
        assert "queued/processing" in text  # while at MVSEP its status is news
        journal.mark_failed(job.id, "rejected by MVSEP: bad option")
    text = _status(path, tmp_path)
    assert "failed" in text and "processing" not in text
    row = json.loads(_status(path, tmp_path, as_json=True))["recent"][0]
    assert row["state"] == "failed" and row["mvsep_status"] is None
    assert row["inbox"] == "music" and row["preset"] == "karaoke"
    assert row["output_dir"] == str(tmp_path / "stems")
    assert row["updated_at"].endswith("+00:00")  # UTC, with the zone
    assert "inbox music, preset karaoke, output " + str(tmp_path / "stems") in text
    assert "~3 credits (estimate)" in text


def test_status_shows_the_credits_the_history_charged(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True)
    with rig(tmp_path, emu) as r:
        job_id = r.submit(audio_file("in/long.wav", seconds=3.0))
        assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is JobState.FILED and job.mvsep_hash is not None
        charged = emu.jobs[job.mvsep_hash].credits
        assert charged >= 1 and job.used_credits == charged
        assert [e.data for e in r.journal.events(job_id) if e.kind == "credits"] == [
            {"credits": charged}
        ]
        text = _status(r.journal.path, tmp_path)
        assert f"{charged:g} credits" in text and "estimate" not in text


def test_waiting_for_a_missing_output_folder_is_not_an_attempt(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu, missing_inbox_recheck_s=0.05) as r:
        r.out.rmdir()  # the output share is not mounted
        job_id = r.submit(audio_file("in/s.wav", seconds=0.5))
        r.engine.start()
        r.recorder.wait_for(
            lambda: sum(e.kind == "deferred" for e in r.journal.events(job_id)) >= 3
        )
        waiting = r.job(job_id)
        assert "output folder" in (waiting.last_error or "")
        assert waiting.attempts == 0 and waiting.first_error_at is None
        r.out.mkdir()  # the share is back
        r.wait_state(job_id, JobState.FILED)
        assert r.job(job_id).attempts == 0


def test_status_lists_the_configured_inboxes(tmp_path: Path) -> None:
    inbox, out = tmp_path / "drop", tmp_path / "stems"
    inbox.mkdir()
    out.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        '[mvsep]\napi_token = "t"\n[journal]\npath = "j.sqlite3"\n'
        "[presets.karaoke]\nsep_type = 40\n"
        f'[[inbox]]\nname = "music"\npath = "{inbox}"\npreset = "karaoke"\noutput = "{out}"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, env={})[0]
    with Journal(settings.journal.path):
        pass  # the daemon ran once
    text, data = io.StringIO(), io.StringIO()
    print_status(settings, out=text)
    print_status(settings, out=data, as_json=True)
    assert f"inbox music: {inbox} (preset karaoke) -> {out}" in text.getvalue()
    (row,) = json.loads(data.getvalue())["inboxes"]
    assert {k: row[k] for k in ("inbox", "path", "preset", "output_dir")} == {
        "inbox": "music", "path": str(inbox), "preset": "karaoke", "output_dir": str(out)
    }  # fmt: skip
    assert row["mode"] is None and row["counts"] == {}  # the daemon never watched it


@pytest.mark.parametrize(
    ("disposed", "shown"),
    [
        ("failed:/in/_failed/a.wav", "moved to /in/_failed/a.wav (its reason beside it"),
        ("archived:/in/_processed/a.wav", "archived at /in/_processed/a.wav"),
        ("deleted", "deleted after its stems were filed"),
        ("replaced", "another file is at its path now"),
        ("left", "left in place"),
    ],
)
def test_where_the_input_went_is_shown(disposed: str, shown: str) -> None:
    from daemon.status import input_text

    assert shown in (input_text(disposed) or "")


def test_a_kept_or_undisposed_input_gets_no_line() -> None:
    from daemon.status import input_text

    assert input_text("kept") is None and input_text(None) is None
