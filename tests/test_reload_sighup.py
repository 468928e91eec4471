"""SIGHUP to a real ``mvsep-watch run`` process: the config is read again and swapped.

The daemon runs as a subprocess against the emulator over loopback; the test edits its
config file, sends SIGHUP, and reads the JSON log lines and the journal (read-only).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until
from test_reload_daemon import inbox, write

from daemon.jobs import JobState
from daemon.journal import Journal

ROOT = Path(__file__).resolve().parents[1]


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVSEP")}
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=env)


def lines(log: Path, event: str) -> list[dict[str, Any]]:
    found = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [x for x in found if str(x.get("event", "")).startswith(event)]


def filed(tmp: Path) -> set[str]:
    try:
        with Journal(tmp / "state" / "journal.sqlite", read_only=True) as journal:
            jobs = journal.recent_jobs(100)
    except sqlite3.OperationalError:  # the daemon is writing it
        return set()
    return {j.source.path.name for j in jobs if j.state is JobState.FILED}


def test_sighup_adds_an_inbox_names_restart_keys_and_refuses_a_broken_config(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emulator = make_emulator(premium=True)
    config = write(tmp_path, emulator.base_url, [inbox(tmp_path, "in")])
    log = tmp_path / "daemon.log"
    proc = start(config, log)
    try:
        wait_until(lambda: bool(lines(log, "daemon started")), "the daemon started")
        token = {"base_url": emulator.base_url, "api_token": "reload-token-1"}
        write(
            tmp_path,
            emulator.base_url,
            [inbox(tmp_path, "in"), inbox(tmp_path, "new")],
            mvsep={**token, "read_timeout_s": 30.0},
        )
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(lines(log, "config reloaded")), "the reload")
        (reloaded,) = [x for x in lines(log, "config reloaded") if x["event"] == "config reloaded"]
        assert reloaded["inboxes_added"] == ["new"]
        (restart,) = lines(log, "config reloaded; needs a restart")
        assert restart["event"].endswith("needs a restart: mvsep.read_timeout_s")
        audio_file("new/song.wav", seconds=0.5)
        wait_until(lambda: filed(tmp_path) == {"song.wav"}, "the new inbox's file filed")

        config.write_text(config.read_text() + "\n[engin]\nmax_transfers = 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(lines(log, "config reload refused")), "the refusal")
        (refused,) = lines(log, "config reload refused")
        assert refused["level"] == "error"
        assert any("engin: unknown key" in p for p in refused["problems"])
        audio_file("new/later.wav", seconds=0.7)  # the running config goes on
        wait_until(lambda: filed(tmp_path) == {"song.wav", "later.wav"}, "the later file")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "reload-token-1" not in log.read_text()
