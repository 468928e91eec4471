"""Issue 9 item 11: the journal deleted (with its lock file) while the daemon runs.

Real files, real SQLite, a real second process, and ``mvsep-watch run`` as a subprocess
against the emulator over loopback. The running daemon notices within a second or two and
stops with exit code 2 and a clear message, creating nothing more; a second daemon started
after the files were deleted is refused while the first still runs (the lock does not live
in a file that can be deleted).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until, write_config

from daemon.errors import JournalError, JournalGoneError, JournalLockedError
from daemon.jobs import JobRequest, JobState, SourceFile
from daemon.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
GONE = "while mvsep-watch was running"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        yield j
    finally:
        j.close()


def source(tmp: Path, name: str = "a.wav") -> SourceFile:
    path = tmp / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return SourceFile(
        path=path,
        inbox="main",
        relative_path=name,
        preset="vocals",
        request=JobRequest(40, {}, 2, "BS Roformer"),
        output_dir=tmp / "out",
        output_template="{name}/{stem}.{ext}",
        failed_dir=tmp / "in" / "_failed",
    )


def delete_journal_files(path: Path) -> None:
    """What a user's ``rm journal.sqlite*`` does: the database, its WAL files and the lock."""
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + ".lock"):
        (path.parent / name).unlink(missing_ok=True)


def test_an_intact_journal_passes_the_check(journal: Journal, tmp_path: Path) -> None:
    journal.check_intact()
    journal.record_seen(source(tmp_path), size=4, mtime=1.0)
    journal.check_intact()


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("journal", "the journal file was deleted"),
        ("lock", "its lock file was deleted"),
        ("both", "the journal file was deleted"),
    ],
)
def test_a_deleted_journal_or_lock_is_noticed_and_refuses_writes(
    journal: Journal, tmp_path: Path, what: str, words: str
) -> None:
    if what in ("journal", "both"):
        journal.path.unlink()
    if what in ("lock", "both"):
        journal.path.with_name(journal.path.name + ".lock").unlink()
    with pytest.raises(JournalGoneError, match=words) as caught:
        journal.check_intact()
    assert GONE in str(caught.value) and "a person must look" in str(caught.value).lower()
    assert caught.value.exit_code == 2
    with pytest.raises(JournalGoneError):  # nothing more is written into the lost file
        journal.record_seen(source(tmp_path), size=4, mtime=1.0)
    journal.close()
    marker = journal.path.with_name(journal.path.name + ".gone")
    assert words in marker.read_text()
    with pytest.raises(JournalGoneError, match="an earlier run stopped"):  # no restart onto
        Journal(journal.path)  # an empty journal, whatever supervisor restarts the daemon
    marker.unlink()  # a person looked
    Journal(journal.path).close()


def test_a_replaced_journal_or_lock_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        other = tmp_path / "other.sqlite"
        sqlite3.connect(other).close()
        os.replace(other, path)  # e.g. a backup restored over the open journal
        with pytest.raises(JournalGoneError, match="journal file was replaced"):
            journal.check_intact()
    path.with_name(path.name + ".gone").unlink()
    with Journal(path) as journal:
        lock = path.with_name(path.name + ".lock")
        lock.unlink()
        lock.write_text("12345\n")
        with pytest.raises(JournalGoneError, match="lock file was replaced"):
            journal.check_intact()


def test_a_second_daemon_after_the_files_were_deleted_is_refused(journal: Journal) -> None:
    """The first still has the journal open; its files are deleted; a second process opens
    the same path (creating new files, a new lock file it can lock): refused, naming the
    first one's pid. Deleting a file does not defeat the lock."""
    delete_journal_files(journal.path)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from daemon.errors import JournalLockedError\n"
        "from daemon.journal import Journal\n"
        "try:\n"
        "    Journal(Path(sys.argv[1])).close()\n"
        "except JournalLockedError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(journal.path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"pid {os.getpid()}" in proc.stdout
    with pytest.raises(JournalLockedError):  # in this process too
        Journal(journal.path)
    journal.close()
    delete_journal_files(journal.path)
    Journal(journal.path).close()  # once the first is gone, a person may start afresh


def test_the_stable_lock_is_per_journal_not_per_folder(tmp_path: Path) -> None:
    """``separate`` keeps its own journal beside the daemon's: both open at once."""
    with Journal(tmp_path / "journal.sqlite"), Journal(tmp_path / "separate.sqlite"):
        pass


# ---------------------------------------------------------------- the whole daemon


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "run"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=dict(os.environ))


def filed(path: Path) -> bool:
    try:
        with Journal(path, read_only=True) as journal:
            jobs = journal.recent_jobs(10)
    except (JournalError, sqlite3.Error):  # not there yet, or its schema not yet made
        return False
    return bool(jobs) and all(j.state is JobState.FILED for j in jobs)


def test_the_daemon_stops_with_exit_code_2_when_its_journal_is_deleted(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.2, premium=True)
    config = write_config(tmp_path, emu.base_url)
    journal_path = tmp_path / "state" / "journal.sqlite"
    log = tmp_path / "daemon.log"
    audio_file("in/first.wav", seconds=0.5)
    proc = start_daemon(config, log)
    try:
        wait_until(lambda: filed(journal_path), "the first file filed")
        assert len(emu.jobs) == 1
        delete_journal_files(journal_path)
        deleted = time.monotonic()
        audio_file("in/second.wav", seconds=0.5)  # must not be sent by a daemon without history
        code = proc.wait(timeout=30)
        took_s = time.monotonic() - deleted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert code == 2, text[-3000:]
    assert took_s < 10.0, text[-3000:]
    assert "journal deleted or replaced" in text and GONE in text
    assert "the journal file was deleted" in text
    assert len(emu.jobs) == 1  # nothing more was created
    assert not (tmp_path / "out" / "second").exists()

    # restarted by a supervisor that restarts on any failure (launchd's KeepAlive): refused
    again = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2, again.stderr[-3000:]
    assert "an earlier run stopped" in again.stderr
    assert len(emu.jobs) == 1
