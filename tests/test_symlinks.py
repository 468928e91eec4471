"""Symbolic links in an inbox, with real links, real files and real observers.

A link to a file outside the inbox would upload whatever the daemon's user can read and
file its stems where the inbox's users read them: skipped (with a reason, logged once)
unless the inbox says ``follow_symlinks = true``. A link to a file inside the inbox is
skipped always: the file itself is processed, and following both would pay twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from test_watcher import MODES, MakeWatcher, make_watcher, write

__all__ = ["make_watcher"]

QUIET_S = 2.0  # a few settle windows (0.5 s) and polls (0.25 s)


def skips(logs: list[dict[str, object]], name: str) -> list[str]:
    return [str(e["reason"]) for e in logs if e["event"] == "file skipped" and e["file"] == name]


@pytest.mark.parametrize("mode", MODES)
def test_link_to_a_file_outside_is_skipped_once_with_a_reason(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    secret = write(tmp_path / "elsewhere" / "private.wav")
    with capture_logs() as logs:
        harness = make_watcher(mode, rescan_interval_s=0.5)
        os.symlink(secret, harness.inbox / "linked.wav")
        write(harness.inbox / "real.wav")
        assert harness.recorder.ready().relative_path == "real.wav"
        harness.recorder.quiet_for(QUIET_S)  # several rescans: still not reported
    reasons = skips(logs, "linked.wav")
    assert len(reasons) == 1, reasons  # logged once, not at every rescan
    assert "outside the inbox" in reasons[0] and "follow_symlinks = true" in reasons[0]


@pytest.mark.parametrize("mode", MODES)
def test_follow_symlinks_reports_a_link_to_a_file_outside(
    make_watcher: MakeWatcher, tmp_path: Path, mode: str
) -> None:
    target = write(tmp_path / "library" / "song.wav")
    harness = make_watcher(mode, follow_symlinks=True)
    os.symlink(target, harness.inbox / "song.wav")
    ready = harness.recorder.ready()
    assert ready.relative_path == "song.wav"
    assert ready.path == harness.inbox / "song.wav"  # the link, not its target
    assert ready.size == target.stat().st_size


def test_link_to_a_file_inside_the_inbox_is_skipped_even_when_following(
    make_watcher: MakeWatcher,
) -> None:
    with capture_logs() as logs:
        harness = make_watcher("native", follow_symlinks=True)
        write(harness.inbox / "album" / "take.wav")
        os.symlink(harness.inbox / "album" / "take.wav", harness.inbox / "alias.wav")
        assert harness.recorder.ready().relative_path == "album/take.wav"
        harness.recorder.quiet_for(QUIET_S)
    assert skips(logs, "alias.wav") == [
        "link to a file inside this inbox (the file itself is processed)"
    ]


def test_links_present_at_start_follow_the_same_rules(
    make_watcher: MakeWatcher, tmp_path: Path
) -> None:
    outside = write(tmp_path / "elsewhere" / "a.wav")
    folder = tmp_path / "elsewhere"
    harness = make_watcher("native", start=False)
    os.symlink(outside, harness.inbox / "a.wav")
    os.symlink(folder, harness.inbox / "folder.wav")
    with capture_logs() as logs:
        harness.watcher.start()
        harness.recorder.quiet_for(QUIET_S)
    assert "outside the inbox" in skips(logs, "a.wav")[0]
    assert skips(logs, "folder.wav") == ["link to a folder (folder links are not followed)"]
