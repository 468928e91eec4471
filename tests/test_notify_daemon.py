"""The whole daemon: a real `mvsep-watch run` subprocess against the emulator, its
notifications to a loopback receiver that is down, the process SIGKILLed with them waiting
in the outbox, then restarted with the receiver up: each is delivered once. The inbox's
`on_failed` hook runs in the daemon; `status` shows what waits and the last error."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from daemon_harness import wait_until, write_config
from notify_rig import free_port, receiver

ROOT = Path(__file__).resolve().parents[1]
HOOK = "import os, sys; open(sys.argv[1], 'w').write(os.environ['MVSEP_WATCH_FILE'])"


def outbox(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "state" / "journal.sqlite"
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY id")]
        finally:
            db.close()
    except sqlite3.OperationalError:  # being created
        return []


def notifications(tmp: Path) -> list[dict[str, Any]]:
    return [r for r in outbox(tmp) if r["channel"] == "notify"]


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env=dict(os.environ))


def status(config: Path) -> str:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "status"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def configure(tmp: Path, base_url: str, port: int) -> Path:
    hook = [sys.executable, "-c", HOOK, str(tmp / "hook-ran")]
    path = write_config(tmp, base_url, on_failed=hook)
    config = tomllib.loads(path.read_text())
    config["notify"] = {"urls": [f"json://127.0.0.1:{port}/"], "on": ["done", "failed"]}
    path.write_text(tomli_w.dumps(config))
    return path


def test_notifications_waiting_at_a_sigkill_are_delivered_after_the_restart(
    tmp_path: Path, emulator: Any, audio_file: Any
) -> None:
    port = free_port()  # the receiver is down for the first run
    config = configure(tmp_path, emulator.base_url, port)
    log = tmp_path / "run.log"
    proc = start(config, log)
    try:
        audio_file("in/song.wav", seconds=1.0)
        (tmp_path / "in" / "bad.wav").write_text("not audio at all\n")
        wait_until(
            lambda: (
                len(notifications(tmp_path)) == 2
                and all(r["attempts"] >= 1 for r in notifications(tmp_path))
            ),
            "both notifications tried once, the receiver down",
        )
        wait_until(lambda: (tmp_path / "hook-ran").exists(), "the on_failed hook run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert (tmp_path / "hook-ran").read_text() == str(tmp_path / "in" / "bad.wav")
    rows = notifications(tmp_path)
    assert {r["topic"] for r in rows} == {"done", "failed"}
    assert all(r["state"] == "waiting" and r["last_error"] for r in rows)
    text = status(config)
    assert "notifications: 2 waiting, last error (" in text
    with receiver(port) as rx:
        proc = start(config, log)
        try:
            wait_until(lambda: len(rx.posts) == 2, "both delivered after the restart")
            wait_until(
                lambda: all(r["state"] == "sent" for r in notifications(tmp_path)),
                "both marked sent",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    titles = sorted(str(p["title"]) for p in rx.posts)
    assert titles == ["mvsep-watch: bad.wav failed", "mvsep-watch: song.wav separated"]
    assert len(rx.posts) == 2  # once each
    hooks = [r for r in outbox(tmp_path) if r["channel"] == "hook"]
    assert [(h["topic"], h["state"], h["attempts"]) for h in hooks] == [("failed", "sent", 1)]
    assert "notifications:" not in status(config)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert any(x["event"] == "notification not sent; tried again later" for x in lines)
    assert "harness-token-1" not in log.read_text()
    assert not any(x.get("logger") == "apprise" for x in lines)  # its lines name the URL


def test_run_refuses_a_url_apprise_cannot_use_with_exit_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9")  # refused before MVSEP is asked
    config = tomllib.loads(path.read_text())
    config["notify"] = {"urls": ["nosuchscheme://secret-part/x"]}
    path.write_text(tomli_w.dumps(config))
    cmd = [sys.executable, "-m", "daemon", "--config", str(path), "run"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{path}: [notify] urls #1: apprise cannot use this nosuchscheme:// URL" in done.stderr
    assert "secret-part" not in done.stderr
