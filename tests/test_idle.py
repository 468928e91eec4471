"""Idle costs nothing (issue 12): the loops' backoff and waits (pure), and the wake paths
through real parts: a real journal and its files, a real inotify observer, a real watcher.

The pure parts take no clock at all (the times are arguments). The others wait on
conditions; where a test says "nothing was written" it reads SQLite's own commit counter
(``PRAGMA data_version`` on a second connection, which moves with every commit of another
connection) around passes it forced.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from daemon_harness import wait_until

from daemon.engine.journal_poke import JournalPoke
from daemon.engine.progress import JournalProgress
from daemon.idle import LONGEST_IDLE_S, IdleBackoff, files_stamp, journal_files
from daemon.journal import Journal
from daemon.journal.control import post_request
from daemon.records import JobRequest, SourceFile
from daemon.sdnotify import Notifier
from daemon.service import note_inbox
from daemon.watcher import InboxWatcher, WatchedInbox
from daemon.watcher.inbox import make_inbox
from daemon.watcher.pace import IDLE_MAX_S, CheckerPace, idle_cap, tick_for


def test_backoff_doubles_while_idle_and_starts_again_after_activity() -> None:
    backoff = IdleBackoff(1.0)
    waits = [backoff.next_s(active=False, cap_s=10.0) for _ in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.next_s(active=True, cap_s=10.0) == 1.0
    assert backoff.next_s(active=False, cap_s=10.0) == 2.0
    assert backoff.next_s(active=False, cap_s=1e9) <= LONGEST_IDLE_S


def _inbox(tmp_path: Path, name: str, **spec: object) -> WatchedInbox:
    (tmp_path / name).mkdir()
    return WatchedInbox(name=name, path=tmp_path / name, **spec)  # type: ignore[arg-type]


def test_checker_backs_off_when_idle_but_samples_settling_files_each_tick(
    tmp_path: Path,
) -> None:
    spec = _inbox(tmp_path, "a", settle_s=1.0)
    inboxes = [make_inbox(spec)]
    pace = CheckerPace(tick_for([spec]))
    assert pace.tick_s == 0.5
    far = 1000.0
    waits = [pace.wait_s(inboxes, now=0.0, next_rescan=far, woken=False) for _ in range(6)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, IDLE_MAX_S]
    inboxes[0].tracker.observe("x.wav", size=1, mtime=1.0, now=0.0)  # a file being written
    assert pace.wait_s(inboxes, now=0.0, next_rescan=far, woken=False) <= 0.5
    inboxes[0].tracker.forget("x.wav")
    assert pace.wait_s(inboxes, now=0.0, next_rescan=far, woken=False) == 0.5  # afresh
    assert pace.wait_s(inboxes, now=0.0, next_rescan=0.3, woken=False) == pytest.approx(0.301)


def test_a_polled_inbox_caps_the_idle_sleep_at_its_poll_interval(tmp_path: Path) -> None:
    native = make_inbox(_inbox(tmp_path, "n"))
    polled = make_inbox(_inbox(tmp_path, "p", poll=True, poll_interval_s=3.0))
    assert idle_cap([native]) == IDLE_MAX_S
    assert idle_cap([native, polled]) == 3.0
    pace = CheckerPace(1.0)
    waits = [pace.wait_s([native, polled], now=0.0, next_rescan=1e6, woken=False)
             for _ in range(4)]  # fmt: skip
    assert waits == [1.0, 2.0, 3.0, 3.0]


def test_the_main_loop_sleeps_no_longer_than_the_next_watchdog_ping() -> None:
    now = [100.0]
    notifier = Notifier(env={"NOTIFY_SOCKET": "@none", "WATCHDOG_USEC": "60000000"},
                        clock=lambda: now[0])  # fmt: skip
    assert notifier.watchdog_due_in() == 30.0
    now[0] = 125.0
    assert notifier.watchdog_due_in() == 5.0
    assert Notifier(env={}).watchdog_due_in() is None


def test_the_journal_files_stamp_moves_with_a_commit(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        files = journal_files(journal.path)
        before = files_stamp(files)
        assert before == files_stamp(files)
        post_request(journal.path, "forget", [1])
        assert files_stamp(files) != before


def test_a_commit_of_another_connection_pokes_the_daemons_own_writes_do_not(
    tmp_path: Path,
) -> None:
    pokes = threading.Semaphore(0)
    with Journal(tmp_path / "journal.sqlite") as journal:
        poke = JournalPoke(journal.path)
        assert poke.start(pokes.release)
        try:
            journal.set_note("own", "a write through the daemon's open connection")
            (tmp_path / "other.txt").write_text("another file of the folder")
            post_request(journal.path, "forget", [1])  # a command's connection: written, closed
            assert pokes.acquire(timeout=10.0)
            assert not pokes.acquire(blocking=False)  # one poke: the command's, not ours
        finally:
            poke.stop()


def test_without_inotify_the_poke_says_so() -> None:
    assert not JournalPoke(Path("/nonexistent/journal.sqlite"), observer=lambda: None).start(
        lambda: None
    )


def test_health_notes_are_journaled_on_a_change_and_not_rewritten_each_pass(
    tmp_path: Path,
) -> None:
    spec = _inbox(tmp_path, "inbox", settle_s=0.2)
    with Journal(tmp_path / "state" / "journal.sqlite") as journal:
        watcher = InboxWatcher(inboxes=[spec], on_ready=lambda f: None, on_removed=lambda p: None,
                               on_health=lambda n, h: note_inbox(journal, n, h))  # fmt: skip
        watcher.start()
        try:
            wait_until(lambda: journal.note("inbox:inbox") is not None, "the first note")
            side = sqlite3.connect(journal.path)
            version = side.execute("PRAGMA data_version").fetchone()[0]
            for _ in range(5):  # passes forced by requests: the health is the same each time
                tick = watcher.last_tick
                watcher.rescan_now()
                wait_until(lambda t=tick: watcher.last_tick != t, "a pass")  # type: ignore[misc]
            assert side.execute("PRAGMA data_version").fetchone()[0] == version  # no commit
            os.rename(spec.path, tmp_path / "parked")  # the share goes away: a change
            wait_until(lambda: _paused_note(journal) is not None, "the pause journaled")
            assert watcher.paused() == ["inbox"]
            assert side.execute("PRAGMA data_version").fetchone()[0] != version
            side.close()
        finally:
            watcher.stop()


def _paused_note(journal: Journal) -> str | None:
    note = journal.note("inbox:inbox")
    return None if note is None else json.loads(note[0])["paused"]


def _source(tmp: Path, name: str) -> SourceFile:
    path = tmp / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    return SourceFile(
        path=path, inbox="music", relative_path=name, preset="karaoke",
        request=JobRequest(40, {}, 1, "BS Roformer"), output_dir=tmp / "stems",
        output_template="{name}/{stem}.{ext}", failed_dir=tmp / "in" / "_failed",
    )  # fmt: skip


def test_the_progress_writer_sleeps_until_a_change_and_then_writes_it(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        job, _ = journal.record_seen(_source(tmp_path, "a.wav"), size=12, mtime=1.0)
        progress = JournalProgress(journal, every_s=0.05)
        try:
            progress(job.id, "upload", {"sent": 10, "total": 100})
            wait_until(lambda: job.id in journal.progress_all(), "the first write")
            side = sqlite3.connect(journal.path)  # its data_version moves with others' commits
            version = side.execute("PRAGMA data_version").fetchone()[0]
            wait_until(lambda: not progress._changed.is_set(), "the writer asleep")
            assert side.execute("PRAGMA data_version").fetchone()[0] == version  # nothing written
            side.close()
            progress(job.id, "upload", {"sent": 50, "total": 100})  # wakes it
            wait_until(lambda: journal.progress_all()[job.id]["upload"]["sent"] == 50, "written")
        finally:
            progress.close()
