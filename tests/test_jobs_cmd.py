"""`jobs list` and `jobs show` (tables and JSON), and the request rows the other `jobs`
commands write, on real journal files (issue 10, "Commands")."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.errors import IllegalTransition, JournalError
from daemon.jobs import JobRequest, JobState, ResultFile, SourceFile
from daemon.journal import Journal, daemon_pid, post_request, request_outcomes
from daemon.journal.control import retried

TOKEN = "tok-jobs-secret-4242"


def _source(tmp: Path, name: str, inbox: str = "music") -> SourceFile:
    path = tmp / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    return SourceFile(
        path=path, inbox=inbox, relative_path=name, preset="karaoke",
        request=JobRequest(40, {}, 1, "BS Roformer"), output_dir=tmp / "stems",
        output_template="{name}/{stem}.{ext}", failed_dir=tmp / "in" / "_failed",
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Three jobs: a.wav failed (music), b.wav ready (music), c.wav ready (other)."""
    journal_path = tmp_path / "journal.sqlite"
    with Journal(journal_path) as journal:
        a, _ = journal.record_seen(_source(tmp_path, "a.wav"), size=12, mtime=1.0)
        journal.mark_failed(a.id, "rejected by MVSEP: bad option")
        journal.record_seen(_source(tmp_path, "b.wav"), size=12, mtime=1.0)
        journal.record_seen(_source(tmp_path, "c.wav", inbox="other"), size=12, mtime=1.0)
    path = tmp_path / "config.toml"
    path.write_text(f'[mvsep]\napi_token = "{TOKEN}"\n[journal]\npath = "{journal_path}"\n')
    path.chmod(0o600)
    return path


def test_jobs_list_table_and_json_with_filters(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "jobs", "list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:5] == ["ID", "STATE", "AGE", "PROGRESS", "FILE"]
    assert [n for n in ("a.wav", "b.wav", "c.wav") if n in table] == ["a.wav", "b.wav", "c.wav"]
    assert "last error: rejected by MVSEP: bad option" in table

    assert main(["jobs", "list", "--state", "ready", "--inbox", "music", "--json",
                 "--config", str(config)]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert [(r["file"].rsplit("/", 1)[-1], r["state"], r["inbox"]) for r in rows] == [
        ("b.wav", "ready", "music")
    ]
    assert main(["--config", str(config), "jobs", "list", "--state", "filed"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "no jobs matching" and TOKEN not in table + out


def test_jobs_show_prints_the_event_history(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "jobs", "show", "1"]) == 0
    text = capsys.readouterr().out
    assert "2 event(s):" in text
    assert "seen" in text and "failed" in text and "ready -> failed" in text
    assert main(["--config", str(config), "jobs", "show", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "failed" and data["last_error"] == "rejected by MVSEP: bad option"
    assert [(e["kind"], e["from"], e["to"]) for e in data["events"]] == [
        ("seen", None, "ready"),
        ("failed", "ready", "failed"),
    ]
    assert data["events"][1]["at"].endswith("+00:00")
    assert main(["--config", str(config), "jobs", "show", "99"]) == 1
    assert "no job 99" in capsys.readouterr().err


def test_a_request_is_a_row_for_the_daemon_and_unknown_jobs_are_named(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal_path = tmp_path / "journal.sqlite"
    assert daemon_pid(journal_path) is None
    assert main(["--config", str(config), "jobs", "cancel", "2", "7", "--json"]) == 1
    captured = capsys.readouterr()
    assert "no job 7" in captured.err
    data = json.loads(captured.out)
    assert "no daemon is running" in data["note"] and len(data["queued"]) == 1
    (row,) = request_outcomes(journal_path, data["queued"])
    assert (row.action, row.job_id, row.state) == ("cancel", 2, "pending")
    with Journal(journal_path) as journal:  # a daemon: it holds the lock
        assert daemon_pid(journal_path) is not None
        assert [r.id for r in journal.pending_requests()] == data["queued"]
        assert journal.get(2).state is JobState.READY  # the command wrote no job


def test_a_request_to_an_old_journal_says_to_start_the_daemon_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.close()
    with pytest.raises(JournalError, match="start the daemon of this mvsep-watch once"):
        post_request(path, "retry", [1])


def test_retried_keeps_a_result_and_clears_an_old_submission(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        job, _ = journal.record_seen(_source(tmp_path, "a.wav"), size=12, mtime=1.0)
        journal.mark_prepared(job.id, "0" * 64, 2.0)
        assert journal.claim_next_ready(lambda: "n0nce") is not None
        journal.mark_submitted(job.id, "h-1")
        failed = journal.mark_failed(job.id, "the download kept failing")
    files = (ResultFile(type="vocals", url="http://127.0.0.1/x"),)
    again = retried(failed, to=JobState.DOWNLOADING, files=files, now=5.0)
    assert (again.state, again.mvsep_hash, again.result_files) == (JobState.DOWNLOADING, "h-1",
                                                                    files)  # fmt: skip
    assert again.last_error is None and again.source_disposed is None
    fresh = retried(failed, to=JobState.READY, files=(), now=5.0)
    assert (fresh.mvsep_hash, fresh.nonce, fresh.sha256) == (None, None, None)
    assert retried(failed, to=JobState.QUEUED, files=(), now=5.0).mvsep_hash == "h-1"
    with pytest.raises(IllegalTransition):
        retried(again, to=JobState.READY, files=(), now=6.0)  # not failed


def test_forget_refuses_a_job_another_was_filed_from(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        first, _ = journal.record_seen(_source(tmp_path, "a.wav"), size=12, mtime=1.0)
        journal.mark_failed(first.id, "x")
        copy, _ = journal.record_seen(_source(tmp_path, "b.wav"), size=12, mtime=1.0)
        journal.mark_duplicate(copy.id, of_job=first.id, sha256="0" * 64,
                               files=(ResultFile(type="vocals", local="/x"),))  # fmt: skip
        journal.mark_failed(copy.id, "y")
        with pytest.raises(IllegalTransition, match="forget it first"):
            journal.forget_job(first.id)
        journal.forget_job(copy.id)
        journal.forget_job(first.id)
        assert journal.recent_jobs(10) == [] and journal.events() == []
