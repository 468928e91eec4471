"""``Daemon.reload`` (what SIGHUP runs) on a running daemon against the emulator.

Real parts throughout: watchdog observers on temp folders, a SQLite journal, the emulator
over loopback. The config file is rewritten between the start and the reload, as a person
editing it would; each test then drops files and watches the journal and the emulator.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from daemon_harness import wait_until
from structlog.testing import capture_logs

from daemon.config import load_settings
from daemon.jobs import Job, JobState
from daemon.service import Daemon

VOCALS = {"sep_type": 40, "output_format": "wav16"}
BASS = {"sep_type": 41, "output_format": "wav16"}  # MVSep Bass: no options


def inbox(tmp: Path, name: str, **keys: Any) -> dict[str, Any]:
    """Inbox ``tmp/<name>`` (preset vocals) filed into ``tmp/out-<name>``, kept after."""
    (tmp / name).mkdir(exist_ok=True)
    return {
        "path": str(tmp / name),
        "preset": "vocals",
        "output": str(tmp / f"out-{name}"),
        "settle_s": 0.3,
        "after_success": "keep",
        **keys,
    }


def write(
    tmp: Path,
    base_url: str,
    inboxes: list[dict[str, Any]],
    presets: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """``tmp/config.toml`` with these inboxes; state under ``tmp/state``, fast polls."""
    config: dict[str, Any] = {
        "mvsep": {"base_url": base_url, "api_token": "reload-token-1"},
        "journal": {"path": str(tmp / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(tmp / "state" / "algorithms.json")},
        "engine": {"poll_unknown_s": 0.3, "poll_max_s": 0.5},
        "presets": presets or {"vocals": VOCALS},
        "inbox": inboxes,
    }
    config.update(sections)
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def start(path: Path, daemons: list[Daemon]) -> Daemon:
    settings, _ = load_settings(path, env={})
    daemon = Daemon(settings, config_label=str(path))
    daemons.append(daemon)
    daemon.start()
    return daemon


def jobs(daemon: Daemon) -> dict[str, Job]:
    assert daemon.journal is not None
    return {j.source.path.name: j for j in daemon.journal.recent_jobs(100)}


def filed(daemon: Daemon, *names: str) -> bool:
    found = jobs(daemon)
    return all(n in found and found[n].state is JobState.FILED for n in names)


def sep_types(emulator: Any) -> dict[str, int]:
    """File name -> the sep_type MVSEP got for it (the upload name ends with the name)."""
    return {job.upload_name.split("-", 1)[-1]: job.sep_type for job in emulator.jobs.values()}


def test_an_added_inbox_is_watched_and_its_file_filed(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True)
    config = write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])
    daemon = start(config, daemons)
    audio_file("new/before.wav", seconds=0.5)  # there before the reload: found by its scan
    write(tmp_path, emulator.base_url, [inbox(tmp_path, "in"), inbox(tmp_path, "new")])

    with capture_logs() as logs:
        assert daemon.reload(config, env={})
    audio_file("new/after.wav", seconds=0.7)  # dropped once it is watched

    wait_until(lambda: filed(daemon, "before.wav", "after.wav"), "both files of the new inbox")
    assert len(list((tmp_path / "out-new").rglob("*.wav"))) == 2 * 2
    assert len(emulator.jobs) == 2
    (reloaded,) = [e for e in logs if e["event"] == "config reloaded"]
    assert reloaded["inboxes_added"] == ["new"] and reloaded["log_level"] == "info"


def test_a_removed_inbox_files_its_queued_job_and_takes_nothing_new(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True, waiting_s=4.0)  # the job waits at MVSEP meanwhile
    both = [inbox(tmp_path, "in"), inbox(tmp_path, "old")]
    config = write(tmp_path, emulator.base_url, both)
    daemon = start(config, daemons)
    audio_file("old/queued.wav", seconds=0.5)
    wait_until(lambda: len(emulator.jobs) == 1, "the create of the removed inbox's file")
    write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])

    assert daemon.reload(config, env={})
    assert jobs(daemon)["queued.wav"].state is not JobState.FILED  # still at MVSEP
    assert daemon.watcher is not None and set(daemon.watcher.watch_modes()) == {"in"}
    audio_file("old/ignored.wav", seconds=0.7)  # dropped first: it would settle first
    audio_file("in/kept.wav", seconds=0.9)

    wait_until(lambda: filed(daemon, "queued.wav", "kept.wav"), "the queued and the new file")
    assert "ignored.wav" not in jobs(daemon)  # nothing new is taken from a removed inbox
    assert len(list((tmp_path / "out-old").rglob("*.wav"))) == 2  # filed where it was to go
    assert (tmp_path / "old" / "queued.wav").exists()  # after_success = keep, as journaled
    assert emulator.stats["cancels"] == 0 and len(emulator.jobs) == 2  # not read as removed


def test_a_broken_config_is_refused_and_the_running_one_kept(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True)
    config = write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])
    daemon = start(config, daemons)
    good = config.read_text(encoding="utf-8")
    broken = [inbox(tmp_path, "in", preset="no-such"), inbox(tmp_path, "new")]
    write(tmp_path, emulator.base_url, broken, engin={"max_transfers": 1})

    with capture_logs() as logs:
        assert not daemon.reload(config, env={})
    (refused,) = [e for e in logs if e["event"].startswith("config reload refused")]
    assert refused["log_level"] == "error"
    problems = "\n".join(refused["problems"])
    assert "engin: unknown key" in problems and str(config) in problems

    # a preset MVSEP does not know is a problem too (resolved against the catalogue)
    unknown = {"vocals": VOCALS, "odd": {"sep_type": "No Such Model"}}
    config.write_text(good, encoding="utf-8")
    write(tmp_path, emulator.base_url, [inbox(tmp_path, "in", preset="odd")], presets=unknown)
    with capture_logs() as logs:
        assert not daemon.reload(config, env={})
    (refused,) = [e for e in logs if e["event"].startswith("config reload refused")]
    assert any("[presets.odd]" in p and "No Such Model" in p for p in refused["problems"])

    audio_file("new/not-watched.wav", seconds=0.5)  # the refused config's inbox
    audio_file("in/song.wav", seconds=0.7)  # the running config still works, as it was
    wait_until(lambda: filed(daemon, "song.wav"), "the file of the running config")
    assert "not-watched.wav" not in jobs(daemon)
    assert {j.source.request.sep_type for j in jobs(daemon).values()} == {40}


def test_a_changed_preset_is_used_by_the_next_file_and_journaled_jobs_keep_theirs(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    # a free account (one slot) whose first job waits at MVSEP: the second file is journaled
    # with the old preset's request but cannot be sent before the reload
    emulator = make_emulator(premium=False, waiting_s=60.0)
    config = write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])
    daemon = start(config, daemons)
    first = audio_file("in/first.wav", seconds=0.5)
    wait_until(lambda: len(emulator.jobs) == 1, "the first create")
    second = audio_file("in/second.wav", seconds=0.7)
    wait_until(lambda: "second.wav" in jobs(daemon), "the second file journaled")
    write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")], presets={"vocals": BASS})

    with capture_logs() as logs:
        assert daemon.reload(config, env={})
    (reloaded,) = [e for e in logs if e["event"] == "config reloaded"]
    assert reloaded["presets_changed"] == ["vocals"]
    audio_file("in/third.wav", seconds=0.9)
    wait_until(lambda: "third.wav" in jobs(daemon), "the third file journaled")
    assert jobs(daemon)["second.wav"].source.request.sep_type == 40
    assert jobs(daemon)["third.wav"].source.request.sep_type == 41

    os.remove(first)  # cancelled at MVSEP: the slot goes to the second file
    wait_until(lambda: "second.wav" in sep_types(emulator), "the second create")
    os.remove(second)  # and then to the third
    wait_until(lambda: "third.wav" in sep_types(emulator), "the third create")
    assert sep_types(emulator) == {"first.wav": 40, "second.wav": 40, "third.wav": 41}
    assert daemon.journal is not None and len(daemon.journal.recent_jobs(100)) == 3  # once each


def test_settings_that_need_a_restart_are_named_and_kept(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True)
    config = write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])
    daemon = start(config, daemons)
    moved = {"path": str(tmp_path / "elsewhere" / "journal.sqlite")}
    write(
        tmp_path,
        emulator.base_url,
        [inbox(tmp_path, "in", after_success="archive")],
        journal=moved,
        engine={"poll_unknown_s": 0.3, "poll_max_s": 0.5, "max_transfers": 1},
    )

    for _ in range(2):  # named at every reload until the daemon restarts
        with capture_logs() as logs:
            assert daemon.reload(config, env={})
        (restart,) = [e for e in logs if "needs a restart" in e["event"]]
        assert restart["event"].endswith("needs a restart: engine.max_transfers, journal.path")
        assert restart["log_level"] == "warning"
        assert restart["needs_restart"] == ["engine.max_transfers", "journal.path"]

    audio_file("in/song.wav", seconds=0.5)  # after_success = archive applied at once
    wait_until(lambda: filed(daemon, "song.wav"), "the file filed")
    wait_until(lambda: (tmp_path / "in" / "_processed" / "song.wav").exists(), "the archive")
    assert (
        daemon.journal is not None and daemon.journal.path == tmp_path / "state" / "journal.sqlite"
    )
    assert not (tmp_path / "elsewhere").exists()


def test_a_rewatched_inbox_does_not_send_a_file_twice(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True)
    config = write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])
    daemon = start(config, daemons)
    audio_file("in/first.wav", seconds=0.5)  # filed and kept in the inbox
    wait_until(lambda: filed(daemon, "first.wav"), "the first file filed")
    write(
        tmp_path,
        emulator.base_url,
        [inbox(tmp_path, "in", settle_s=0.4, poll=True, poll_interval_s=0.3)],
    )

    with capture_logs() as logs:
        assert daemon.reload(config, env={})
    (reloaded,) = [e for e in logs if e["event"] == "config reloaded"]
    assert reloaded["inboxes_changed"] == {"in": ["poll", "poll_interval_s", "settle_s"]}
    assert daemon.watcher is not None and daemon.watcher.watch_modes() == {"in": "polling"}
    audio_file("in/second.wav", seconds=0.7)  # the fresh scan offers first.wav again first

    wait_until(lambda: filed(daemon, "second.wav"), "the second file filed")
    assert daemon.journal is not None and len(daemon.journal.recent_jobs(100)) == 2
    assert len(emulator.jobs) == 2  # the journal knew first.wav: not sent again
