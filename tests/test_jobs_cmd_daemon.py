"""`jobs retry / cancel / forget` through the whole daemon (issue 10, "Commands").

The command writes a request row; the running daemon (watcher, journal, engine, client)
carries it out and answers. Real parts throughout: a Daemon on temp folders, its SQLite
journal, the emulator over loopback; the cancel runs the real command in a subprocess (a
second process writing its request beside the daemon's lock).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until, write_config

from daemon.cli import main
from daemon.config import load_settings
from daemon.emulator.faults import Fault
from daemon.jobs import Job, JobState
from daemon.journal import Journal
from daemon.service import Daemon

ROOT = Path(__file__).resolve().parents[1]
FAST_FAIL = {"retry_base_s": 0.05, "retry_cap_s": 0.1, "retry_deadline_s": 0.5}


def start(config: Path, daemons: list[Daemon]) -> Daemon:
    settings, _ = load_settings(config, env={})
    daemon = Daemon(settings, config_label=str(config))
    daemon.start()
    daemons.append(daemon)
    return daemon


def only_job(journal_path: Path) -> Job:
    with Journal(journal_path, read_only=True) as journal:
        jobs = journal.recent_jobs(10)
        assert len(jobs) == 1, [(j.id, j.state, j.source.path, j.last_error) for j in jobs]
        return jobs[0]


def has_one_job(journal_path: Path) -> bool:
    if not journal_path.exists():
        return False
    with Journal(journal_path, read_only=True) as journal:
        return len(journal.recent_jobs(10)) == 1


def failed_and_moved(journal_path: Path) -> bool:
    if not has_one_job(journal_path):
        return False
    job = only_job(journal_path)
    return job.state is JobState.FAILED and (job.source_disposed or "").startswith("failed:")


def test_retry_of_a_job_failed_at_mvsep_puts_it_back_and_files_it(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = make_emulator(premium=True)
    emulator.add_fault(Fault(kind="job_failed", endpoint="create", times=1))
    config = write_config(tmp_path, emulator.base_url)
    journal = tmp_path / "state" / "journal.sqlite"
    start(config, daemons)
    song = audio_file("in/song.wav", seconds=1.0)
    wait_until(lambda: failed_and_moved(journal), "the job failed")
    failed = tmp_path / "in" / "_failed" / "song.wav"
    assert failed.exists() and not song.exists()
    job_id = only_job(journal).id
    capsys.readouterr()

    assert main(["--config", str(config), "jobs", "retry", str(job_id)]) == 0
    answer = capsys.readouterr().out
    assert f"put back at {song}" in answer and "sent to MVSEP again (it failed there)" in answer

    wait_until(lambda: only_job(journal).state is JobState.FILED, "the retried job filed")
    assert song.exists() and not failed.exists()  # back in the inbox (after_success = keep)
    assert not list((tmp_path / "in" / "_failed").glob("*.error.txt"))
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 2
    assert len(emulator.jobs) == 2  # the first separation failed at MVSEP: sent again
    with Journal(journal, read_only=True) as j:
        assert len(j.recent_jobs(10)) == 1  # the watcher saw the file back: the same job
        assert "retried" in [e.kind for e in j.events(job_id)]


def test_retry_of_a_failed_download_downloads_without_paying_twice(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = make_emulator(premium=True)
    emulator.add_fault(Fault(kind="drop_download", endpoint="download", times=None))
    config = write_config(tmp_path, emulator.base_url, engine=FAST_FAIL)
    journal = tmp_path / "state" / "journal.sqlite"
    start(config, daemons)
    audio_file("in/song.wav", seconds=1.0)
    wait_until(lambda: failed_and_moved(journal), "the download failed")
    job = only_job(journal)
    assert job.mvsep_hash is not None and job.result_files
    emulator.clear_faults()  # the network is fine again
    capsys.readouterr()

    assert main(["--config", str(config), "jobs", "retry", "--failed"]) == 0
    assert "nothing paid twice" in capsys.readouterr().out
    wait_until(lambda: only_job(journal).state is JobState.FILED, "the result filed")
    assert len(emulator.jobs) == 1 and emulator.stats["creates_accepted"] == 1  # one payment
    assert only_job(journal).mvsep_hash == job.mvsep_hash
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 2


def test_retry_with_no_daemon_running_is_carried_out_at_the_next_start(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = make_emulator(premium=True)
    emulator.add_fault(Fault(kind="job_failed", endpoint="create", times=1))
    config = write_config(tmp_path, emulator.base_url)
    journal = tmp_path / "state" / "journal.sqlite"
    first = start(config, daemons)
    audio_file("in/song.wav", seconds=1.0)
    wait_until(lambda: failed_and_moved(journal), "the job failed")
    first.stop()
    daemons.remove(first)
    capsys.readouterr()

    assert main(["--config", str(config), "jobs", "retry", "--failed"]) == 0
    assert "no daemon is running" in capsys.readouterr().out
    assert only_job(journal).state is JobState.FAILED  # nothing done behind its back

    start(config, daemons)
    wait_until(lambda: only_job(journal).state is JobState.FILED, "filed after the start")
    assert (tmp_path / "in" / "song.wav").exists()


def test_cancel_of_a_queued_job_cancels_it_at_mvsep_then_forget(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True, waiting_s=60.0)
    config = write_config(tmp_path, emulator.base_url)
    journal = tmp_path / "state" / "journal.sqlite"
    start(config, daemons)
    audio_file("in/song.wav", seconds=1.0)
    wait_until(
        lambda: has_one_job(journal) and only_job(journal).mvsep_status == "waiting", "queued"
    )
    job_id = only_job(journal).id

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "daemon", "--config", str(config), "jobs", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)

    refused = command("forget", str(job_id))  # still at MVSEP: not forgotten
    assert refused.returncode == 1 and "cancel it first" in refused.stdout, refused
    done = command("cancel", str(job_id))
    assert done.returncode == 0, done.stderr
    assert "cancel requested" in done.stdout

    wait_until(lambda: only_job(journal).state is JobState.CANCELLED, "cancelled")
    assert "cancelled at MVSEP" in (only_job(journal).last_error or "")
    assert emulator.stats["cancels"] == 1
    (at_mvsep,) = emulator.jobs.values()
    assert at_mvsep.state == "cancelled"

    forgotten = command("forget", str(job_id), "--json")
    assert forgotten.returncode == 0, forgotten.stderr
    assert '"state": "done"' in forgotten.stdout
    with Journal(journal, read_only=True) as j:
        assert j.recent_jobs(10) == [] and j.events(job_id) == []
