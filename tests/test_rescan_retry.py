"""Issue 9 item 12: a file that could not be journaled (the state disk full) is retried by
the next rescan, not marked reported until a restart.

A full disk cannot be made here without root, so the one thing stood in for is the failing
write: the first ``on_ready`` (or the journal's ``record_seen``) raises ``OSError(ENOSPC)``.
Everything else is real: watchdog observers on temp folders, the daemon's journal (SQLite),
the emulator over loopback.
"""

from __future__ import annotations

import errno
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until, write_config

from daemon.config import load_settings
from daemon.service import Daemon
from daemon.watcher import InboxWatcher, ReadyFile, WatchedInbox

SETTLE_S = 0.3
DEADLINE_S = 30.0


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("poll", [False, True], ids=["native", "polling"])
def test_a_file_whose_hand_off_failed_is_offered_again_by_the_next_rescan(
    tmp_path: Path, poll: bool
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    calls: queue.Queue[ReadyFile] = queue.Queue()
    failures = [disk_full()]

    def on_ready(ready: ReadyFile) -> None:
        calls.put(ready)
        if failures:
            raise failures.pop()

    spec = WatchedInbox(name="in", path=inbox, poll=poll, poll_interval_s=0.2, settle_s=SETTLE_S)
    watcher = InboxWatcher(
        inboxes=[spec], on_ready=on_ready, on_removed=lambda p: None, rescan_interval_s=3600
    )
    watcher.start()
    try:
        (inbox / "song.wav").write_bytes(b"RIFF....WAVE" * 100)
        first = calls.get(timeout=DEADLINE_S)
        assert first.relative_path == "song.wav" and not failures
        with pytest.raises(queue.Empty):  # not hammered every settle window: it waits
            calls.get(timeout=SETTLE_S * 5)
        watcher.rescan_now()
        again = calls.get(timeout=DEADLINE_S)
        assert (again.relative_path, again.size) == ("song.wav", first.size)
        with pytest.raises(queue.Empty):  # handed on now: reported once, as any file
            calls.get(timeout=SETTLE_S * 4)
    finally:
        watcher.stop()


def test_the_daemon_journals_a_file_after_the_state_disk_was_full(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = make_emulator(premium=True)
    path = write_config(tmp_path, emulator.base_url)
    settings, _ = load_settings(path, env={})
    daemons.append(daemon := Daemon(settings, config_label=str(path)))
    daemon.start()
    assert daemon.journal is not None and daemon.watcher is not None
    journal = daemon.journal
    real_record_seen = journal.record_seen
    refused: list[Path] = []

    def record_seen(source: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(source.path)
            raise disk_full()
        return real_record_seen(source, **kwargs)

    monkeypatch.setattr(journal, "record_seen", record_seen)
    audio_file("in/full.wav", seconds=1.0)
    wait_until(lambda: bool(refused), "the journal write that hit the full disk")
    assert journal.recent_jobs(10) == []
    daemon.watcher.rescan_now()
    wait_until(lambda: len(journal.recent_jobs(10)) == 1, "the rescan journaling the file")
    wait_until(lambda: journal.recent_jobs(10)[0].state.value == "filed", "the job filed")
    assert any((tmp_path / "out").rglob("*.wav")), "its stems are in the output folder"
    assert emulator.stats["creates_accepted"] == 1


def test_a_failed_hand_off_brings_the_next_rescan_within_the_retry_time(tmp_path: Path) -> None:
    from daemon.watcher.checker import HANDOFF_RETRY_S

    inbox = tmp_path / "in"
    inbox.mkdir()
    offset = [0.0]  # the watcher's clock runs ahead when the test says so
    calls: queue.Queue[ReadyFile] = queue.Queue()
    failures = [disk_full()]

    def on_ready(ready: ReadyFile) -> None:
        calls.put(ready)
        if failures:
            raise failures.pop()

    watcher = InboxWatcher(
        inboxes=[WatchedInbox(name="in", path=inbox, poll=False, settle_s=SETTLE_S)],
        on_ready=on_ready,
        on_removed=lambda p: None,
        rescan_interval_s=3600,
        clock=lambda: time.monotonic() + offset[0],
    )
    watcher.start()
    try:
        (inbox / "song.wav").write_bytes(b"RIFF....WAVE" * 100)
        calls.get(timeout=DEADLINE_S)
        offset[0] = HANDOFF_RETRY_S / 2
        with pytest.raises(queue.Empty):  # half the retry time: no rescan yet
            calls.get(timeout=SETTLE_S * 4)
        offset[0] = HANDOFF_RETRY_S + 1  # not the hour of rescan_interval_s
        assert calls.get(timeout=DEADLINE_S).relative_path == "song.wav"
    finally:
        watcher.stop()
