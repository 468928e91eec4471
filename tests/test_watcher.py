"""The watcher with real observers on temp folders, native (inotify here) and polling.

Tests wait on conditions with deadlines (a queue's ``get(timeout=...)``), never on bare
sleeps; only the slow-copy writer sleeps, between chunks, as a slow copy does.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from daemon.watcher import INOTIFY_LOGGER, InboxWatcher, ReadyFile, WatchedInbox

MODES = ["native", "polling"]
SETTLE_S = 0.5
POLL_S = 0.25
DEADLINE_S = 30.0  # generous: loaded CI machines are slow; passing tests never wait it out


@dataclass
class Recorder:
    """Collects callbacks on a queue; ``next()`` waits with a deadline."""

    events: queue.Queue[tuple[str, Any, float]] = field(default_factory=queue.Queue)

    def on_ready(self, ready: ReadyFile) -> None:
        self.events.put(("ready", ready, time.monotonic()))

    def on_removed(self, path: Path) -> None:
        self.events.put(("removed", path, time.monotonic()))

    def next(self, timeout: float = DEADLINE_S) -> tuple[str, Any, float]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watcher event within {timeout} s") from None

    def ready(self, timeout: float = DEADLINE_S) -> ReadyFile:
        kind, item, _ = self.next(timeout)
        assert kind == "ready", (kind, item)
        assert isinstance(item, ReadyFile)
        return item

    def ready_names(self, count: int, timeout: float = DEADLINE_S) -> set[str]:
        return {self.ready(timeout).relative_path for _ in range(count)}

    def quiet_for(self, seconds: float) -> None:
        """Assert nothing more arrives for ``seconds`` (the only wait that is a duration)."""
        try:
            got = self.events.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected watcher event: {got}")


@dataclass
class Harness:
    inbox: Path
    recorder: Recorder
    watcher: InboxWatcher


MakeWatcher = Callable[..., Harness]


@pytest.fixture
def make_watcher(tmp_path: Path) -> Iterator[MakeWatcher]:
    started: list[InboxWatcher] = []

    def factory(
        mode: str = "native",
        *,
        name: str = "inbox",
        settle_s: float = SETTLE_S,
        start: bool = True,
        rescan_interval_s: float = 300,
        observer_factory: Callable[[], BaseObserver] = Observer,
        polling_factory: Callable[[float], BaseObserver] | None = None,
        mountinfo: Path | None = None,
        **inbox_kwargs: Any,
    ) -> Harness:
        inbox = tmp_path / name
        inbox.mkdir(exist_ok=True)
        inbox_kwargs.setdefault("poll", mode == "polling")
        spec = WatchedInbox(
            name=name,
            path=inbox,
            poll_interval_s=POLL_S,
            settle_s=settle_s,
            **inbox_kwargs,
        )
        recorder = Recorder()
        watcher = InboxWatcher(
            inboxes=[spec],
            on_ready=recorder.on_ready,
            on_removed=recorder.on_removed,
            rescan_interval_s=rescan_interval_s,
            observer_factory=observer_factory,
            **({"polling_factory": polling_factory} if polling_factory else {}),
            **({"mountinfo": mountinfo} if mountinfo else {}),
        )
        started.append(watcher)
        if start:
            watcher.start()
        return Harness(inbox, recorder, watcher)

    yield factory
    for watcher in started:
        watcher.stop()


def write(path: Path, data: bytes = b"RIFF....WAVE") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def slow_copy(path: Path, chunks: int, chunk: bytes, interval_s: float) -> float:
    """Write like a slow SMB copy: open once, append a chunk every ``interval_s``.
    Returns the longest gap between two writes (a loaded machine can stretch it)."""
    longest, last = 0.0, time.monotonic()
    with open(path, "wb") as out:
        for _ in range(chunks):
            out.write(chunk)
            out.flush()
            now = time.monotonic()
            longest, last = max(longest, now - last), now
            time.sleep(interval_s)
    return longest


# ------------------------------------------------------------------------- finished writing


def test_slow_copy_is_reported_once_when_complete(make_watcher: MakeWatcher) -> None:
    """A file written in chunks over 10+ s, native and polling side by side (in parallel to
    keep the module short): exactly one report, after the last write, with the full size."""
    chunk, chunks, interval_s, settle_s = b"\0" * 65536, 18, 0.6, 6.0  # 10.8 s of writing
    harnesses = {mode: make_watcher(mode, name=mode, settle_s=settle_s) for mode in MODES}
    finished: dict[str, float] = {}
    gaps: dict[str, float] = {}

    def writer(mode: str) -> None:
        gaps[mode] = slow_copy(harnesses[mode].inbox / "slow.wav", chunks, chunk, interval_s)
        finished[mode] = time.monotonic()

    threads = [threading.Thread(target=writer, args=(mode,)) for mode in MODES]
    for thread in threads:
        thread.start()
    for mode, harness in harnesses.items():
        kind, ready, at = harness.recorder.next(timeout=2 * chunks * interval_s + DEADLINE_S)
        assert kind == "ready" and isinstance(ready, ReadyFile), mode
        assert mode in finished, f"{mode}: reported while still being written ({ready.size} B)"
        assert gaps[mode] < settle_s, f"machine too loaded: writer paused {gaps[mode]:.1f} s"
        assert ready.relative_path == "slow.wav" and ready.size == chunks * len(chunk), mode
        assert at >= finished[mode] - interval_s, mode
    for thread in threads:
        thread.join()
    for harness in harnesses.values():
        harness.recorder.quiet_for(2.5)


@pytest.mark.parametrize("mode", MODES)
def test_atomic_rename_into_inbox_is_seen(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    harness = make_watcher(mode)
    outside = write(tmp_path / "elsewhere" / "take1.flac", b"flac" * 100)
    os.rename(outside, harness.inbox / "take1.flac")  # moved in from outside the inbox
    partial = write(harness.inbox / "take2.wav.part", b"wave" * 50)
    os.rename(partial, harness.inbox / "take2.wav")  # browser-style rename when complete
    assert harness.recorder.ready_names(2) == {"take1.flac", "take2.wav"}
    harness.recorder.quiet_for(2 * SETTLE_S)


@pytest.mark.parametrize("mode", MODES)
def test_files_present_before_start_are_reported(make_watcher: MakeWatcher, mode: str) -> None:
    harness = make_watcher(mode, start=False)
    names = {"a.wav", "sub/b.mp3", "sub/deeper/c.FLAC"}
    for name in names:
        write(harness.inbox / name)
    write(harness.inbox / "notes.txt")
    harness.watcher.start()
    got = harness.recorder.ready_names(3)
    assert got == names
    ready_paths = {harness.inbox / n for n in names}
    assert all(p.is_file() for p in ready_paths)
    harness.recorder.quiet_for(2 * SETTLE_S)


def test_non_recursive_inbox_ignores_subfolders(make_watcher: MakeWatcher) -> None:
    harness = make_watcher("native", start=False, recursive=False)
    write(harness.inbox / "sub" / "deep.wav")
    write(harness.inbox / "top.wav")
    harness.watcher.start()
    assert harness.recorder.ready().relative_path == "top.wav"
    write(harness.inbox / "sub" / "later.wav")
    harness.recorder.quiet_for(3 * SETTLE_S)


JUNK = [
    ".DS_Store", "._a.wav", "Thumbs.db", "desktop.ini", "a.wav.part", "a.wav.crdownload",
    "a.tmp", "a.wav.!qB", "~$a.wav", ".syncthing.a.wav.tmp", "@eaDir/a.wav", "#recycle/a.wav",
    "#snapshot/a.wav", ".stfolder/a.wav", ".stversions/a.wav", ".Trash-1000/a.wav",
    "$RECYCLE.BIN/a.wav", "System Volume Information/a.wav", "a.pk", "a.reapeaks", "a.asd",
    "a.peak", "a.sfk", "a.ovw", "notes.txt", "video.mp4", "_mvsep_out/a.wav",
    ".mvsep-watch/a.wav", "out/a.wav",
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_ignored_names_are_never_reported(make_watcher: MakeWatcher, mode: str) -> None:
    with capture_logs() as logs:
        harness = make_watcher(mode, start=False, excluded_dirs=(Path("out"),))
        _run_junk_scenario(harness)
    skipped = [entry["file"] for entry in logs if entry["event"].endswith("skipped")]
    assert len(skipped) == len(set(skipped))  # each skip logged once, rescans included
    assert "a.reapeaks" in skipped and "@eaDir" in skipped
    assert all(entry.get("reason") for entry in logs if entry["event"].endswith("skipped"))


@pytest.mark.parametrize("mode", MODES)
def test_daemon_own_moves_are_not_logged_as_skipped(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    """What the engine moves into ``_failed`` or the archive (folders inside the inbox, as
    ``service.watched_inbox`` excludes them) is neither input nor a skip worth a line."""
    root = tmp_path / "inbox"
    own = (root / "_failed", root / "_processed", root / "out")
    write(root / "_processed" / "earlier.wav")  # left by a previous run
    write(root / "_failed" / "older.wav.error.txt", b"reason")
    with capture_logs() as logs:
        harness = make_watcher(mode, excluded_dirs=own)
        write(root / "a.wav")
        write(root / "b.wav")
        assert harness.recorder.ready_names(2) == {"a.wav", "b.wav"}
        # the engine's disposal: rename into the folder (filing._move), a report beside it
        os.rename(root / "a.wav", root / "_failed" / "a.wav")
        write(root / "_failed" / "a.wav.error.txt", b"reason")
        os.rename(root / "b.wav", root / "_processed" / "b.wav")
        gone = {harness.recorder.next()[:2] for _ in range(2)}
        assert gone == {("removed", root / "a.wav"), ("removed", root / "b.wav")}
        harness.watcher.rescan_now()
        write(root / "z.wav")  # a sentinel: the moves and the rescan were processed before it
        assert harness.recorder.ready().relative_path == "z.wav"
    mentions = [e for e in logs if str(e.get("file", "")).startswith(("_failed", "_processed"))]
    assert mentions == []
    skips = [e for e in logs if "skipped" in e["event"]]
    assert not [e for e in skips if "daemon folder" in e.get("reason", "")]


def _run_junk_scenario(harness: Harness) -> None:
    half = len(JUNK) // 2
    for name in JUNK[:half]:  # present at start: the startup scan must skip them
        write(harness.inbox / name)
    harness.watcher.start()
    for name in JUNK[half:]:  # arriving while watched: events must skip them
        write(harness.inbox / name)
    write(harness.inbox / "zz-sentinel.wav")
    assert harness.recorder.ready().relative_path == "zz-sentinel.wav"
    harness.watcher.rescan_now()  # a rescan must not log the skips again
    harness.recorder.quiet_for(3 * SETTLE_S)


# --------------------------------------------------------------------------------- removal


@pytest.mark.parametrize("mode", MODES)
def test_removed_and_moved_out_files_are_reported_removed(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    harness = make_watcher(mode)
    gone, moved = write(harness.inbox / "gone.wav"), write(harness.inbox / "sub" / "moved.wav")
    assert harness.recorder.ready_names(2) == {"gone.wav", "sub/moved.wav"}
    gone.unlink()
    os.rename(moved, tmp_path / "moved-out.wav")
    removed = set()
    for _ in range(2):
        kind, path, _ = harness.recorder.next()
        assert kind == "removed"
        removed.add(path)
    assert removed == {gone, moved}


@pytest.mark.parametrize("mode", MODES)
def test_vanished_inbox_is_paused_not_emptied(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    """An inbox folder that disappears (unmounted share) reports nothing removed; when it
    comes back it is rescanned and new files are seen, known ones not re-reported."""
    harness = make_watcher(mode)
    write(harness.inbox / "kept.wav")
    assert harness.recorder.ready().relative_path == "kept.wav"
    parked = tmp_path / "parked"
    os.rename(harness.inbox, parked)  # the share goes away, files and all
    harness.recorder.quiet_for(4 * SETTLE_S)
    write(parked / "while-away.wav")
    os.rename(parked, harness.inbox)  # and comes back
    assert harness.recorder.ready().relative_path == "while-away.wav"
    harness.recorder.quiet_for(2 * SETTLE_S)


# ---------------------------------------------------------------- missed events, rescans


@pytest.mark.parametrize("mode", MODES)
def test_file_added_while_stopped_is_found_on_restart(make_watcher: MakeWatcher, mode: str) -> None:
    harness = make_watcher(mode)
    write(harness.inbox / "before.wav")
    assert harness.recorder.ready().relative_path == "before.wav"
    harness.watcher.stop()
    write(harness.inbox / "missed.wav")
    harness.watcher.start()
    assert harness.recorder.ready().relative_path == "missed.wav"  # "before" not re-reported
    harness.recorder.quiet_for(2 * SETTLE_S)


class DeafObserver(Observer):  # type: ignore[misc,valid-type]
    """Accepts watches and never delivers an event: every event is "lost"."""

    def schedule(self, event_handler: Any, path: Any, **kwargs: Any) -> ObservedWatch:
        return ObservedWatch(path, recursive=bool(kwargs.get("recursive")))

    def unschedule(self, watch: ObservedWatch) -> None:
        pass


def test_lost_events_are_made_up_by_the_periodic_rescan(make_watcher: MakeWatcher) -> None:
    harness = make_watcher("native", rescan_interval_s=1.0, observer_factory=DeafObserver)
    write(harness.inbox / "unheard.wav")
    assert harness.recorder.ready().relative_path == "unheard.wav"
    (harness.inbox / "unheard.wav").unlink()
    kind, path, _ = harness.recorder.next()
    assert (kind, path) == ("removed", harness.inbox / "unheard.wav")


class FullInotifyObserver(Observer):  # type: ignore[misc,valid-type]
    """Scheduling fails as when fs.inotify.max_user_watches is exhausted."""

    def schedule(self, event_handler: Any, path: Any, **kwargs: Any) -> ObservedWatch:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_inotify_limit_falls_back_to_polling(make_watcher: MakeWatcher) -> None:
    with capture_logs() as logs:
        harness = make_watcher("native", observer_factory=FullInotifyObserver)
        write(harness.inbox / "song.wav")
        assert harness.recorder.ready().relative_path == "song.wav"
    fixes = [entry["fix"] for entry in logs if "fix" in entry]
    assert fixes == ["sudo sysctl fs.inotify.max_user_watches=524288"]


def test_rewritten_file_is_reported_again(make_watcher: MakeWatcher) -> None:
    harness = make_watcher("native")
    path = write(harness.inbox / "song.wav", b"one")
    assert harness.recorder.ready().size == 3
    write(path, b"second take")
    assert harness.recorder.ready().size == len(b"second take")


def test_failing_consumer_gets_the_file_again(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    calls: queue.Queue[ReadyFile] = queue.Queue()

    def flaky(ready: ReadyFile) -> None:
        calls.put(ready)
        if calls.qsize() == 1:
            raise RuntimeError("journal busy")

    watcher = InboxWatcher(
        inboxes=[WatchedInbox(name="in", path=inbox, settle_s=SETTLE_S)],
        on_ready=flaky,
        on_removed=lambda path: None,
    )
    write(inbox / "song.wav")
    watcher.start()
    try:
        first = calls.get(timeout=DEADLINE_S)
        watcher.rescan_now()  # the next rescan offers it again (tests/test_rescan_retry.py)
        second = calls.get(timeout=DEADLINE_S)
    finally:
        watcher.stop()
    assert first == second


def test_watchdog_stop_race_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(INOTIFY_LOGGER)
    with caplog.at_level(logging.DEBUG, logger=INOTIFY_LOGGER):
        logger.error("InotifyEmitter.queue_events() called when the thread is inactive")
        logger.error("a real inotify problem")
    assert [r.getMessage() for r in caplog.records] == ["a real inotify problem"]
