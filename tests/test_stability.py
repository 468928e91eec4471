"""Pure tests of finished-writing detection and the ignore filter: injected `now`, no sleeping."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from daemon.stability import (
    DEFAULT_AUDIO_EXTENSIONS,
    IgnoreRules,
    Settled,
    StabilityTracker,
    normalise_extensions,
)

# (now, size, mtime) samples -> index of the sample at which the file is settled (None: never)
SAMPLES = [
    pytest.param([(0, 10, 1.0), (4.9, 10, 1.0)], None, id="not-yet"),
    pytest.param([(0, 10, 1.0), (5.0, 10, 1.0)], 1, id="exactly-settle"),
    pytest.param([(0, 10, 1.0), (3, 20, 2.0), (7, 20, 2.0), (8, 20, 2.0)], 3, id="grew-restarts"),
    pytest.param([(0, 10, 1.0), (3, 10, 2.0), (6, 10, 2.0), (8, 10, 2.0)], 3, id="mtime-change"),
    pytest.param([(0, 10, 1.0), (9, 10, 1.0)], 1, id="single-late-confirmation"),
    pytest.param([(0, 0, 1.0), (1, 5, 1.0), (2, 9, 1.0), (3, 9, 1.0)], None, id="still-growing"),
    # A NAS clock far in the future or the past does not matter: only changes count.
    pytest.param([(0, 10, 9e9), (5, 10, 9e9)], 1, id="mtime-in-future"),
    pytest.param([(0, 10, 0.0), (1, 10, 0.0)], None, id="old-mtime-still-waits"),
]


@pytest.mark.parametrize(("samples", "settled_at"), SAMPLES)
def test_settles_after_unchanged_for_settle_s(
    samples: list[tuple[float, int, float]], settled_at: int | None
) -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=5)
    results = [tracker.observe("a", size=s, mtime=m, now=t) for t, s, m in samples]
    hits = [i for i, r in enumerate(results) if r is not None]
    assert hits == ([] if settled_at is None else [settled_at])
    if settled_at is not None:
        _, size, mtime = samples[settled_at]
        assert results[settled_at] == Settled("a", size, mtime)


def test_reported_once_until_changed() -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=2)
    tracker.observe("a", size=1, mtime=1.0, now=0)
    assert tracker.observe("a", size=1, mtime=1.0, now=2) is not None
    tracker.mark_reported("a")
    assert tracker.is_reported("a")
    assert tracker.observe("a", size=1, mtime=1.0, now=100) is None  # rescans say nothing
    assert tracker.due(100) == []
    assert tracker.observe("a", size=2, mtime=3.0, now=101) is None  # rewritten
    assert not tracker.is_reported("a")
    assert tracker.observe("a", size=2, mtime=3.0, now=103) == Settled("a", 2, 3.0)


def test_unreported_settled_file_is_offered_again() -> None:
    """Until mark_reported, a settled file keeps being returned (the consumer may fail)."""
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=1)
    tracker.observe("a", size=1, mtime=1.0, now=0)
    assert tracker.observe("a", size=1, mtime=1.0, now=1) is not None
    assert tracker.observe("a", size=1, mtime=1.0, now=1.5) is not None


def test_restart_waits_another_window() -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=2)
    tracker.observe("a", size=1, mtime=1.0, now=0)
    assert tracker.observe("a", size=1, mtime=1.0, now=2) is not None
    tracker.restart("a", now=2)  # e.g. could not be opened yet
    assert tracker.observe("a", size=1, mtime=1.0, now=3) is None
    assert tracker.due(3.9) == []
    assert tracker.due(4) == ["a"]
    assert tracker.observe("a", size=1, mtime=1.0, now=4) is not None


@pytest.mark.parametrize(
    ("firsts", "now", "due", "next_due"),
    [
        ({"a": 0.0, "b": 3.0}, 4.9, [], 5.0),
        ({"a": 0.0, "b": 3.0}, 5.0, ["a"], 5.0),
        ({"a": 0.0, "b": 3.0}, 8.0, ["a", "b"], 5.0),
        ({}, 0.0, [], None),
    ],
)
def test_due_lists_paths_whose_window_elapsed(
    firsts: dict[str, float], now: float, due: list[str], next_due: float | None
) -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=5)
    for key, t in firsts.items():
        tracker.observe(key, size=1, mtime=1.0, now=t)
    assert sorted(tracker.due(now)) == due
    assert tracker.next_due() == next_due


def test_forget_and_membership() -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=1)
    tracker.observe("a", size=1, mtime=1.0, now=0)
    assert "a" in tracker and len(tracker) == 1 and tracker.keys() == ["a"]
    assert tracker.forget("a") is True
    assert tracker.forget("a") is False
    assert "a" not in tracker and tracker.next_due() is None


def test_zero_settle_is_ready_at_first_sample() -> None:
    tracker: StabilityTracker[str] = StabilityTracker(settle_s=0)
    assert tracker.observe("a", size=1, mtime=1.0, now=0) == Settled("a", 1, 1.0)


def test_negative_settle_rejected() -> None:
    with pytest.raises(ValueError):
        StabilityTracker(settle_s=-1)


# --------------------------------------------------------------------------- ignore rules

RULES = IgnoreRules(excluded_dirs=(PurePosixPath("_out"), PurePosixPath("done/archive")))

CANDIDATES = [
    "song.wav", "Song.WAV", "a/b/c.flac", "x.mp3", "x.m4a", "x.aac", "x.ogg", "x.opus",
    "x.aiff", "x.aif", "x.wma", "x.ape", "x.wv", "done/keep.flac", "my.part.wav", "~song.wav",
    "archive/x.wav", "recycle/x.wav", "Ünïcødé 曲.flac",
]  # fmt: skip


@pytest.mark.parametrize("path", CANDIDATES)
def test_audio_files_are_candidates(path: str) -> None:
    assert RULES(path) is None


IGNORED = [
    (".DS_Store", "system file"), ("sub/Thumbs.db", "system file"),
    ("desktop.ini", "system file"), ("DESKTOP.INI", "system file"),
    ("._song.wav", "resource fork"), ("song.wav.part", "partial"),
    ("song.wav.crdownload", "partial"), ("song.tmp", "partial"), ("song.wav.!qB", "partial"),
    ("~$song.wav", "partial"), (".syncthing.song.wav.tmp", "partial"),
    ("@eaDir/song.wav", "junk folder"), ("a/@eaDir/song.wav@SynoEAStream", "junk folder"),
    ("#recycle/song.wav", "junk folder"), ("#snapshot/x.flac", "junk folder"),
    (".stfolder/x.wav", "junk folder"), (".stversions/x~2024.wav", "junk folder"),
    (".Trash-1000/files/x.wav", "junk folder"), ("$RECYCLE.BIN/x.wav", "junk folder"),
    ("System Volume Information/x.wav", "junk folder"),
    ("song.pk", "DAW"), ("song.reapeaks", "DAW"), ("song.wav.asd", "DAW"),
    ("song.peak", "DAW"), ("song.sfk", "DAW"), ("song.ovw", "DAW"),
    ("_out/x.wav", "excluded_dirs"), ("done/archive/sub/x.wav", "excluded_dirs"),
    ("_mvsep_failed/x.wav", "daemon folder"), (".mvsep-watch/x.wav", "daemon folder"),
    (".hidden.wav", "hidden file"), (".git/x.wav", "hidden folder"),
    ("notes.txt", "not an audio extension (.txt)"), ("README", "no extension"),
    ("video.mp4", "not an audio extension (.mp4)"), ("cover.jpg", "not an audio extension"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "reason"), IGNORED)
def test_ignored_paths_give_a_reason(path: str, reason: str) -> None:
    got = RULES(path)
    assert got is not None and reason in got


OWN = [
    (("_out",), True), (("_OUT", "sub"), True), (("done", "archive", "x"), True),
    (("_mvsep_failed",), True), (("a", ".mvsep-watch"), True),
    (("done",), False), (("@eaDir",), False), ((".git",), False), ((), False),
]  # fmt: skip


@pytest.mark.parametrize(("folder", "own"), OWN)
def test_own_folder_is_the_daemons_folders_only(folder: tuple[str, ...], own: bool) -> None:
    assert RULES.own_folder(folder) is own
    assert RULES.own_folder("/".join(folder)) is own


def test_folder_reason_prunes_whole_trees() -> None:
    assert RULES.folder_reason(("a", "@eaDir")) is not None
    assert RULES.folder_reason("done/archive") is not None
    assert RULES.folder_reason("done") is None
    assert RULES.folder_reason(()) is None


@pytest.mark.parametrize(
    ("extensions", "path", "ok"),
    [
        ({".MP4", "wav"}, "clip.mp4", True),
        ({".MP4", "wav"}, "song.flac", False),
        ({"flac"}, "song.FLAC", True),
    ],
)
def test_custom_extensions(extensions: set[str], path: str, ok: bool) -> None:
    rules = IgnoreRules(extensions=normalise_extensions(extensions))
    assert (rules(path) is None) is ok


def test_extensions_are_normalised_and_defaults_have_no_video() -> None:
    assert normalise_extensions([".WAV", " flac ", ""]) == {"wav", "flac"}
    assert IgnoreRules(extensions=frozenset({".Wav"})).extensions == {"wav"}
    assert {"wav", "flac", "mp3", "m4a", "aac", "ogg", "opus", "aiff", "aif", "wma"} <= (
        DEFAULT_AUDIO_EXTENSIONS
    )
    assert not {"mp4", "mkv", "mov", "m4v"} & DEFAULT_AUDIO_EXTENSIONS
