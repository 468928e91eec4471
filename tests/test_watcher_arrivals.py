"""Files that arrive oddly: created empty and filled seconds later. Real files, real observers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_watcher import MODES, MakeWatcher, make_watcher

from daemon.stability import StabilityTracker, empty_wait_for

__all__ = ["make_watcher"]


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_file_held_open_and_filled_later_is_reported_once_full(
    make_watcher: MakeWatcher, mode: str
) -> None:
    harness = make_watcher(mode, empty_wait_s=20.0)
    path = harness.inbox / "bounce.wav"
    with open(path, "wb") as out:  # created, held open, empty for several settle windows
        harness.recorder.quiet_for(2.0)  # 4 settle windows (0.5 s): not handed on while empty
        out.write(b"RIFF" + bytes(4000))
    ready = harness.recorder.ready()
    assert (ready.relative_path, ready.size) == ("bounce.wav", 4004)
    harness.recorder.quiet_for(1.0)


def test_an_old_empty_file_is_handed_on(make_watcher: MakeWatcher) -> None:
    harness = make_watcher("native", empty_wait_s=1.5)
    started = time.monotonic()
    (harness.inbox / "empty.wav").touch()
    ready = harness.recorder.ready()
    assert ready.size == 0 and time.monotonic() - started >= 1.5


@pytest.mark.parametrize(
    ("samples", "settled_at"),
    [
        ([(0, 0.0), (0, 5.0), (0, 29.0), (0, 30.0)], 30.0),  # empty: waits the empty window
        ([(0, 0.0), (0, 4.0), (10, 4.5), (10, 9.5)], 9.5),  # filled: the normal window
        ([(10, 0.0), (10, 5.0)], 5.0),
    ],
)
def test_tracker_waits_longer_for_empty_files(
    samples: list[tuple[int, float]], settled_at: float
) -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=5.0)
    assert tracker.empty_settle_s == empty_wait_for(5.0) == 30.0
    when = None
    for size, now in samples:
        if tracker.observe("f", size=size, mtime=float(size), now=now) is not None:
            when = now
            break
    assert when == settled_at


def test_empty_window_is_due_and_next_due(tmp_path: Path) -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=1.0, empty_settle_s=10.0)
    tracker.observe("empty", size=0, mtime=1.0, now=0.0)
    tracker.observe("full", size=5, mtime=1.0, now=0.0)
    assert tracker.due(2.0) == ["full"]
    tracker.mark_reported("full")
    assert tracker.next_due() == 10.0
    assert tracker.due(10.0) == ["empty"]
