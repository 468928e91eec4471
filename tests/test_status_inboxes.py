"""`status` per inbox (watch mode, paused and why, jobs per state) and per job (progress,
age), from another process's view: the journal only (issue 10, "Commands").

The daemon tests run a real Daemon (watchdog observers on temp folders, the emulator over
loopback) and read what it journaled; the progress tests drive the real journal hook with
an injected clock.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until, write_config

from daemon.config import Settings, load_settings
from daemon.engine.progress import JournalProgress
from daemon.jobs import JobRequest, SourceFile
from daemon.journal import Journal
from daemon.service import Daemon
from daemon.status import collect, print_status


def status_of(settings: Settings) -> tuple[str, dict[str, Any]]:
    text, data = io.StringIO(), io.StringIO()
    assert print_status(settings, out=text) == 0
    assert print_status(settings, out=data, as_json=True) == 0
    return text.getvalue(), json.loads(data.getvalue())


def test_status_shows_each_inbox_mode_and_its_pause(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True)
    config = write_config(tmp_path, emulator.base_url, poll=True, poll_interval_s=0.2)
    settings, _ = load_settings(config, env={})
    daemons.append(daemon := Daemon(settings, config_label=str(config)))
    daemon.start()
    audio_file("in/song.wav", seconds=0.5)

    def inbox() -> dict[str, Any]:
        row: dict[str, Any] = collect(settings)["inboxes"][0]
        return row

    wait_until(lambda: inbox()["counts"] == {"filed": 1}, "the song filed")
    text, data = status_of(settings)
    assert data["daemon"] == {"running": True, "pid": str(os.getpid())}
    row = data["inboxes"][0]
    assert row["mode"] == "polling" and row["mode_reason"] == "poll = true in the config"
    assert row["paused"] is None
    assert "    watch: polling (poll = true in the config)" in text
    assert "    jobs: filed 1" in text and f"daemon: running (pid {os.getpid()})" in text
    assert data["recent"][0]["age_s"] >= 0 and data["recent"][0]["progress"] is None

    os.rename(tmp_path / "in", tmp_path / "away")  # the share goes away
    wait_until(lambda: inbox()["paused"] is not None, "the pause journaled")
    text, data = status_of(settings)
    assert data["inboxes"][0]["paused"] == "folder missing (unmounted share?)"
    assert "    PAUSED: folder missing (unmounted share?)" in text

    os.rename(tmp_path / "away", tmp_path / "in")
    wait_until(lambda: inbox()["paused"] is None, "the resume journaled")
    daemon.stop()
    daemons.clear()
    text, data = status_of(settings)
    assert data["daemon"] == {"running": False, "pid": None}
    assert ", as of the daemon's last run (" in text and "daemon: not running" in text


def _source(tmp: Path, name: str) -> SourceFile:
    path = tmp / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    return SourceFile(
        path=path, inbox="music", relative_path=name, preset="karaoke",
        request=JobRequest(40, {}, 1, "BS Roformer"), output_dir=tmp / "stems",
        output_template="{name}/{stem}.{ext}", failed_dir=tmp / "in" / "_failed",
    )  # fmt: skip


def settings_for(tmp: Path, journal: Path) -> Settings:
    config = tmp / "config.toml"
    config.write_text(f'[mvsep]\napi_token = "t"\n[journal]\npath = "{journal}"\n')
    return load_settings(config, env={})[0]


def test_progress_is_journaled_by_its_own_flush_and_shown(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        job, _ = journal.record_seen(_source(tmp_path, "a.wav"), size=12, mtime=1.0)
        hook = JournalProgress(journal, thread=False)  # the test is the flushing thread
        hook(job.id, "upload", {"sent": 10, "total": 100})
        hook(job.id, "upload", {"sent": 20, "total": 100})
        assert journal.progress_all() == {}  # the transfer's thread never writes
        hook.flush()
        assert journal.progress_all()[job.id] == {"upload": {"sent": 20, "total": 100}}
        hook(job.id, "state", {"state": "queued", "event": "submitted", "reason": ""})
        hook.flush()
        assert job.id not in journal.progress_all()  # the upload is over
        queue = {"status": "waiting", "current_order": 3, "queue_count": 7,
                 "finished_chunks": 2, "all_chunks": 5}  # fmt: skip
        hook(job.id, "queue", queue)
        hook.flush()
        text, data = status_of(settings_for(tmp_path, path))
        assert data["recent"][0]["progress"] == {"queue": queue}
        assert "queue 3, chunks 2/5" in text
        hook(job.id, "state", {"state": "failed", "event": "failed", "reason": "x"})
        hook.flush()
        assert journal.progress_all() == {}
        hook(99, "upload", {"sent": 1, "total": 2})  # a job forgotten meanwhile: no row
        hook.flush()
        assert journal.progress_all() == {}


def test_progress_is_written_by_the_hooks_thread(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        job, _ = journal.record_seen(_source(tmp_path, "a.wav"), size=12, mtime=1.0)
        hook = JournalProgress(journal, every_s=0.05)
        hook(job.id, "download", {"stem": "vocals", "received": 5, "total": 10})
        wait_until(lambda: job.id in journal.progress_all(), "the progress row")
        hook.close()


def test_status_progress_of_a_download_and_the_credits_today(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        job, _ = journal.record_seen(_source(tmp_path, "b.wav"), size=12, mtime=1.0)
        journal.mark_prepared(job.id, "0" * 64, 2.0)
        assert journal.claim_next_ready(lambda: "n0nce") is not None
        journal.mark_submitted(job.id, "h-1", credits=1.5)
        hook = JournalProgress(journal, thread=False)
        hook(job.id, "download", {"stem": "vocals", "received": 30, "total": 40})
        hook.flush()
    text, data = status_of(settings_for(tmp_path, path))
    assert "download vocals 75%" in text
    assert data["credits_today"] == 1.5 and "credits used today: 1.5" in text
    assert data["inboxes"] == [] and data["total"] == 1
