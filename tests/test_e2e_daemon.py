"""End to end: the real daemon (watcher, journal, engine, client) against the emulator.

Three inboxes with different presets; twenty files dropped at once, one of them not audio
and one named in Cyrillic and CJK with an emoji. Everything is real: watchdog observers on
temp folders, a SQLite journal, HTTP over loopback to the emulator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile
import tomli_w

from daemon.config import load_settings
from daemon.jobs import JobState
from daemon.service import Daemon

TERMINAL = {JobState.FILED, JobState.FAILED, JobState.CANCELLED}
STEMS = {
    "four": ["Vocals", "Drums", "Bass", "Other"],
    "vocals": ["Vocals", "Instrumental"],
}


def write_config(tmp_path: Path, base_url: str, inboxes: list[dict[str, Any]]) -> Path:
    config = {
        "mvsep": {
            "base_url": base_url,
            "api_token": "e2e-token-1234",
            "rate_limit_per_minute": 600,
        },
        "journal": {"path": str(tmp_path / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(tmp_path / "state" / "algorithms.json")},
        "engine": {"retry_base_s": 0.2, "retry_cap_s": 1.0},
        "presets": {
            "four": {
                "sep_type": "Demucs4 HT (vocals, drums, bass, other)",
                "output_format": "flac16",
            },
            "vocals": {"sep_type": 40, "output_format": "wav16"},
        },
        "inbox": inboxes,
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def inbox(tmp_path: Path, name: str, preset: str, **extra: Any) -> dict[str, Any]:
    (tmp_path / "in" / name).mkdir(parents=True, exist_ok=True)
    return {
        "path": str(tmp_path / "in" / name),
        "preset": preset,
        "output": str(tmp_path / "out" / name),
        "settle_s": 0.5,
        **extra,
    }


@pytest.fixture
def running(tmp_path: Path, make_emulator: Callable[..., Any]) -> Iterator[tuple[Daemon, Any]]:
    emulator = make_emulator(premium=True, processing_s=0.3, rate_limit_per_min=1000)
    config = write_config(
        tmp_path,
        emulator.base_url,
        [
            inbox(tmp_path, "music", "four"),
            inbox(tmp_path, "voice", "vocals", poll=True, poll_interval_s=0.5),
            inbox(tmp_path, "mixed", "four", subfolders_as_presets=True, after_success="keep"),
        ],
    )
    settings, _ = load_settings(config, env={})
    daemon = Daemon(settings, config_label=str(config))
    daemon.start()
    yield daemon, emulator
    daemon.stop()


def wait_for_jobs(daemon: Daemon, count: int, timeout_s: float) -> list[Any]:
    assert daemon.journal is not None
    deadline = time.monotonic() + timeout_s
    jobs: list[Any] = []
    while time.monotonic() < deadline:
        jobs = daemon.journal.recent_jobs(1000)
        if len(jobs) >= count and all(j.state in TERMINAL for j in jobs):
            return jobs
        time.sleep(0.2)
    states = {j.source.path.name: str(j.state) for j in jobs}
    raise AssertionError(f"not all {count} jobs finished in {timeout_s} s: {states}")


def test_twenty_files_three_inboxes(
    tmp_path: Path, running: tuple[Daemon, Any], audio_file: Callable[..., Path]
) -> None:
    daemon, emulator = running
    drops: dict[Path, str] = {}  # final path in an inbox -> preset expected
    for i in range(7):
        drops[tmp_path / "in" / "music" / f"song {i:02}.wav"] = "four"
    for i in range(6):
        drops[tmp_path / "in" / "voice" / "takes" / f"take {i}.flac"] = "vocals"
    for i in range(3):
        drops[tmp_path / "in" / "mixed" / "vocals" / f"mix {i}.wav"] = "vocals"
    drops[tmp_path / "in" / "mixed" / f"top {0}.mp3"] = "four"
    drops[tmp_path / "in" / "music" / "Ёлка 東京 🎄.wav"] = "four"
    drops[tmp_path / "in" / "mixed" / "vocals" / "unicode ✓ ß.wav"] = "vocals"
    bad = tmp_path / "in" / "music" / "notes.wav"
    staged: list[tuple[Path, Path]] = []
    for i, target in enumerate(drops):
        src = audio_file(f"staging/{i}{target.suffix}", seconds=1.5 + i / 500)  # each its own
        staged.append((src, target))
    bad_src = tmp_path / "staging" / "bad.wav"
    bad_src.write_text("these are my lyrics, not audio\n" * 20, encoding="utf-8")
    staged.append((bad_src, bad))
    assert len(staged) == 20
    for src, target in staged:  # all at once: atomic renames into the inboxes
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)

    jobs = wait_for_jobs(daemon, 20, timeout_s=150)

    by_path = {j.source.path: j for j in jobs}
    assert len(by_path) == 20
    for path, preset in drops.items():
        job = by_path[path]
        assert job.state == JobState.FILED, (path.name, job.state, job.last_error)
        assert job.source.preset == preset
        assert_stems(tmp_path, path, preset, job.outputs)
    failed = by_path[bad]
    assert failed.state == JobState.FAILED and "not audio" in (failed.last_error or "")
    moved = tmp_path / "in" / "music" / "_failed" / "notes.wav"
    assert moved.exists() and not bad.exists()
    report = (moved.parent / "notes.wav.error.txt").read_text(encoding="utf-8")
    assert "not audio" in report and "retry" in report.lower()
    # nineteen good files, nineteen creates: the bad one cost nothing
    assert len(emulator.jobs) == 19
    assert not list((tmp_path / "out").rglob("*.part"))
    # archived inputs left the inbox; "keep" inputs stayed
    assert not (tmp_path / "in" / "music" / "song 00.wav").exists()
    assert (tmp_path / "in" / "music" / "_processed" / "song 00.wav").exists()
    assert (tmp_path / "in" / "mixed" / "top 0.mp3").exists()


def assert_stems(tmp_path: Path, source: Path, preset: str, outputs: tuple[str, ...]) -> None:
    inbox_root = tmp_path / "in" / source.relative_to(tmp_path / "in").parts[0]
    relative_dir = source.parent.relative_to(inbox_root)
    folder = tmp_path / "out" / inbox_root.name / relative_dir / source.stem
    ext = "flac" if preset == "four" else "wav"
    expected = {folder / f"{source.stem} - {stem}.{ext}" for stem in STEMS[preset]}
    assert {Path(o) for o in outputs if not o.endswith(".json")} == expected
    for stem in expected:
        info = soundfile.info(str(stem))
        assert abs(info.duration - 1.5) < 0.1, (stem, info.duration)
    sidecars = list(folder.glob("*.json"))
    assert len(sidecars) == 1, sidecars
