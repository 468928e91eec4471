"""A token revoked while the daemon runs pauses every submit; nothing fails (issue 9, item 5).

The daemon runs as a real `mvsep-watch run` subprocess against the emulator in this process,
which accepts only the tokens its options list; the test changes that list while the daemon
runs (the emulator reads it at every request). Revoked: files dropped meanwhile stay in the
inbox, no job fails, no `_failed` folder appears, one WARNING says why, and `status` (text
and JSON, read from the journal) shows the pause. Restored (or a new token given and
SIGHUP sent): every file is filed by itself, each created once, and the banner is gone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until, write_config

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.jobs import JobState
from daemon.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-pause-aaaa-1111"
NEW_TOKEN = "tok-pause-bbbb-2222"
FAST = {"retry_base_s": 0.2, "retry_cap_s": 1.0}  # the account is looked at again quickly


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    options = EmulatorOptions(premium=True, processing_s=0.3, rate_limit=False, tokens=(TOKEN,))
    with EmulatorServer(options, host="127.0.0.1", port=0) as server:
        yield server


def accept_tokens(server: EmulatorServer, *tokens: str) -> None:
    """Revoke or restore tokens at the emulator (its state reads the list per request)."""
    server.state.options = dataclasses.replace(server.state.options, tokens=tokens)


def states(tmp: Path) -> list[JobState]:
    path = tmp / "state" / "journal.sqlite"
    if not path.exists():
        return []
    try:
        with Journal(path, read_only=True) as journal:
            return [job.state for job in journal.recent_jobs(100)]
    except sqlite3.OperationalError:  # the daemon is creating it
        return []


def status(config: Path, *extra: str) -> str:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "status", *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def status_json(config: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(status(config, "--json"))
    return data


def creates(server: EmulatorServer) -> int:
    counted = server.stats["calls"]
    assert isinstance(counted, dict)
    return int(counted.get("create", 0))


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=dict(os.environ))


def pause_warnings(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [x for x in lines if str(x.get("event", "")).startswith("MVSEP account refused")]


def revoke_and_drop(
    tmp: Path, server: EmulatorServer, config: Path, log: Path, audio: Callable[..., Path]
) -> list[Path]:
    """Revoke the token once a first file is filed, drop two more: they wait, unfailed."""
    audio("in/first.wav", seconds=1.0)
    wait_until(lambda: states(tmp) == [JobState.FILED], "the first file filed")
    accept_tokens(server, "someone-else")
    refused_before = creates(server)
    dropped = [audio(f"in/late {i}.wav", seconds=1.2 + 0.2 * i) for i in range(2)]  # new audio
    wait_until(lambda: status_json(config).get("account") is not None, "the pause in the journal")
    wait_until(lambda: creates(server) > refused_before, "a create refused")
    wait_until(lambda: len(states(tmp)) == 3, "both late files journaled")
    assert JobState.FAILED not in states(tmp)
    assert not (tmp / "in" / "_failed").exists()
    assert all(p.exists() for p in dropped)
    account = status_json(config)["account"]
    assert "token" in account["paused"] and TOKEN not in json.dumps(account)
    assert "SUBMITS PAUSED" in status(config)
    assert len(pause_warnings(log)) == 1, pause_warnings(log)
    assert pause_warnings(log)[0]["level"] == "warning"
    return dropped


def assert_all_filed(tmp: Path, server: EmulatorServer, config: Path, log: Path) -> None:
    wait_until(lambda: states(tmp) == [JobState.FILED] * 3, "every file filed")
    assert len(server.jobs) == 3  # each file created once
    assert status_json(config)["account"] is None
    assert "SUBMITS PAUSED" not in status(config)
    assert not (tmp / "in" / "_failed").exists()
    assert len(sorted((tmp / "out").rglob("*.wav"))) == 2 * 3
    text = log.read_text()
    assert TOKEN not in text and NEW_TOKEN not in text


def test_revoked_token_pauses_submits_and_they_go_on_when_restored(
    tmp_path: Path, emulator: EmulatorServer, audio_file: Callable[..., Path]
) -> None:
    config = write_config(tmp_path, emulator.base_url, mvsep={"api_token": TOKEN}, engine=FAST)
    log = tmp_path / "daemon.log"
    proc = start(config, log)
    try:
        revoke_and_drop(tmp_path, emulator, config, log, audio_file)
        accept_tokens(emulator, TOKEN)  # the account works again: nothing else is done
        assert_all_filed(tmp_path, emulator, config, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sighup_with_a_new_token_ends_the_pause(
    tmp_path: Path, emulator: EmulatorServer, audio_file: Callable[..., Path]
) -> None:
    slow = {"retry_base_s": 60.0, "retry_cap_s": 600.0}  # only SIGHUP can end it in time
    config = write_config(tmp_path, emulator.base_url, mvsep={"api_token": TOKEN}, engine=slow)
    log = tmp_path / "daemon.log"
    proc = start(config, log)
    try:
        revoke_and_drop(tmp_path, emulator, config, log, audio_file)
        accept_tokens(emulator, NEW_TOKEN)
        config.write_text(config.read_text().replace(TOKEN, NEW_TOKEN), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        assert_all_filed(tmp_path, emulator, config, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_restart_after_the_token_was_fixed_clears_the_banner(
    tmp_path: Path, emulator: EmulatorServer, audio_file: Callable[..., Path]
) -> None:
    config = write_config(tmp_path, emulator.base_url, mvsep={"api_token": TOKEN}, engine=FAST)
    log = tmp_path / "daemon.log"
    proc = start(config, log)
    try:
        revoke_and_drop(tmp_path, emulator, config, log, audio_file)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    accept_tokens(emulator, TOKEN)
    proc = start(config, log)  # the journal still holds the earlier run's pause
    try:
        assert_all_filed(tmp_path, emulator, config, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
