"""``InboxWatcher.update_inboxes``: inboxes added, removed or replaced while it runs.

Real observers on temp folders (native inotify here, and polling), as in test_watcher.py,
whose recorder and fixture these tests share.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_watcher import MODES, POLL_S, SETTLE_S, MakeWatcher, make_watcher, write

from daemon.watcher import WatchedInbox

__all__ = ["make_watcher"]  # the shared fixture


def spec(tmp_path: Path, name: str, mode: str, **keys: object) -> WatchedInbox:
    (tmp_path / name).mkdir(exist_ok=True)
    return WatchedInbox(
        name=name,
        path=tmp_path / name,
        poll=mode == "polling",
        poll_interval_s=POLL_S,
        settle_s=SETTLE_S,
        **keys,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mode", MODES)
def test_an_added_inbox_is_scanned_then_watched(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    harness = make_watcher(mode)
    write(tmp_path / "second" / "before.wav")  # there before: the first scan finds it

    assert harness.watcher.update_inboxes(add=[spec(tmp_path, "second", mode)])
    first = harness.recorder.ready()
    assert (first.inbox, first.relative_path) == ("second", "before.wav")
    write(tmp_path / "second" / "after.wav")  # an event (or a poll) finds it
    later = harness.recorder.ready()
    assert (later.inbox, later.relative_path) == ("second", "after.wav")
    assert set(harness.watcher.watch_modes()) == {"inbox", "second"}


@pytest.mark.parametrize("mode", MODES)
def test_a_removed_inbox_reports_nothing_more(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    harness = make_watcher(mode)
    assert harness.watcher.update_inboxes(add=[spec(tmp_path, "kept", mode)])
    known = write(harness.inbox / "known.wav")
    assert harness.recorder.ready().relative_path == "known.wav"

    assert harness.watcher.update_inboxes(remove=["inbox"])
    known.unlink()  # not reported removed: its job must not be cancelled
    write(harness.inbox / "new.wav")  # not reported ready: nothing new is taken
    write(tmp_path / "kept" / "late.wav")  # settles after those would have been seen

    kind, item, _ = harness.recorder.next()
    assert kind == "ready" and (item.inbox, item.relative_path) == ("kept", "late.wav")
    assert harness.recorder.events.empty()
    assert set(harness.watcher.watch_modes()) == {"kept"}


def test_a_replaced_inbox_is_watched_afresh_with_its_new_spec(
    make_watcher: MakeWatcher, tmp_path: Path
) -> None:
    harness = make_watcher(extensions=frozenset({"wav"}))
    write(harness.inbox / "song.wav")
    assert harness.recorder.ready().relative_path == "song.wav"
    write(harness.inbox / "song.flac")  # not an extension of this inbox (yet)

    wider = spec(tmp_path, "inbox", "native", extensions=frozenset({"wav", "flac"}))
    assert harness.watcher.update_inboxes(add=[wider], remove=["inbox"])
    # a fresh scan offers every file again; the journal knows the one already taken
    assert harness.recorder.ready_names(2) == {"song.wav", "song.flac"}


def test_a_name_watched_twice_is_refused(make_watcher: MakeWatcher, tmp_path: Path) -> None:
    harness = make_watcher()
    with pytest.raises(ValueError, match="unique"):
        harness.watcher.update_inboxes(add=[spec(tmp_path, "inbox", "native")])


def test_an_update_before_start_is_watched_at_start(
    make_watcher: MakeWatcher, tmp_path: Path
) -> None:
    harness = make_watcher(start=False)
    write(tmp_path / "second" / "early.wav")
    assert harness.watcher.update_inboxes(add=[spec(tmp_path, "second", "native")])
    harness.watcher.start()
    ready = harness.recorder.ready()
    assert (ready.inbox, ready.relative_path) == ("second", "early.wav")
