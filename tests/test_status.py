"""`status` reads the journal while the daemon holds it, and never shows the token."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.errors import JournalLockedError
from daemon.jobs import JobRequest, SourceFile
from daemon.journal import Journal
from daemon.status import print_status

TOKEN = "tok-status-secret-777"


def settings_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mvsep]\napi_token = "{TOKEN}"\n[journal]\npath = "journal.sqlite"\n', encoding="utf-8"
    )
    return load_settings(config, env={})[0]


def source(tmp_path: Path, name: str) -> SourceFile:
    path = tmp_path / name
    path.write_bytes(b"RIFF....WAVE")
    request = JobRequest(sep_type=40, options={}, output_format=1, algorithm_name="BS Roformer")
    return SourceFile(
        path=path, inbox="in", relative_path=name, preset="v", request=request,
        output_dir=tmp_path / "out", output_template="{name}/{stem}.{ext}",
        failed_dir=tmp_path / "_failed",
    )  # fmt: skip


def test_status_while_the_daemon_holds_the_journal(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with Journal(settings.journal.path) as journal:  # the "daemon"
        for name in ("a.wav", "b.wav"):
            src = source(tmp_path, name)
            journal.record_seen(src, size=12, mtime=1.0)
        job = journal.recent_jobs(1)[0]
        journal.mark_failed(job.id, "rejected by MVSEP: bad option")
        with pytest.raises(JournalLockedError):
            Journal(settings.journal.path)  # a second writer is refused
        out = io.StringIO()
        assert print_status(settings, out=out) == 0
        text = out.getvalue()
        assert "ready" in text and "failed" in text and "b.wav" in text
        assert "last error: rejected by MVSEP: bad option" in text
        out_json = io.StringIO()
        print_status(settings, as_json=True, out=out_json)
        data = json.loads(out_json.getvalue())
        assert {k: v for k, v in data["counts"].items() if v} == {"ready": 1, "failed": 1}
        assert TOKEN not in text + out_json.getvalue()


def test_status_without_a_journal(tmp_path: Path) -> None:
    out = io.StringIO()
    assert print_status(settings_for(tmp_path), out=out) == 0
    assert "no journal" in out.getvalue()
