"""A real `mvsep-watch run` subprocess tells a real notify socket (a path one and an abstract
one) READY, STATUS, WATCHDOG, RELOADING and STOPPING, as systemd's Type=notify expects."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import DEADLINE_S, write_config

from daemon.emulator import EmulatorOptions, EmulatorServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorOptions(premium=True), host="127.0.0.1", port=0) as server:
        yield server


class Messages:
    """Everything the daemon sent, one datagram each."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[str] = []

    def wait_for(self, predicate: Callable[[str], bool], what: str, *, after: int = 0) -> str:
        """The first message (already seen from index ``after``, or arriving) for which
        ``predicate`` holds."""
        for message in self.seen[after:]:
            if predicate(message):
                return message
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(65536).decode()
            except TimeoutError:
                break
            self.seen.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no {what} among {self.seen}")


def start(config: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "--log-format", "json", "run"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=sink, env={**os.environ, **env})


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_notifies_ready_status_watchdog_and_stopping(
    tmp_path: Path, emulator: EmulatorServer, audio_file: Callable[..., Path]
) -> None:
    config = write_config(tmp_path, emulator.base_url)
    log = tmp_path / "daemon.log"
    with tempfile.TemporaryDirectory(prefix="sdn") as folder:
        address = str(Path(folder) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address)
            # WatchdogSec=1: a ping every 0.5 s while the engine and the watcher tick
            proc = start(config, log, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
            try:
                messages = Messages(sock)
                messages.wait_for(lambda m: m == "READY=1", "READY=1")
                messages.wait_for(lambda m: m.startswith("STATUS=jobs: "), "a STATUS line")
                messages.wait_for(lambda m: m == "WATCHDOG=1", "WATCHDOG=1")
                audio_file("in/song.wav", seconds=1.0)
                filed = messages.wait_for(lambda m: "1 filed" in m, "a STATUS with the job")
                code = stop(proc)
                messages.wait_for(lambda m: m == "STOPPING=1", "STOPPING=1")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert filed.startswith("STATUS=jobs: ") and "\n" not in filed
    first = messages.seen.index("READY=1")
    assert any(m.startswith("STATUS=starting") for m in messages.seen[:first])
    assert messages.seen.index("STOPPING=1") > first


def test_an_abstract_socket_hears_reloading_and_no_watchdog_for_another_pid(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path, emulator.base_url)
    log = tmp_path / "daemon.log"
    name = f"mvsep-watch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
        proc = start(config, log, env)
        try:
            messages = Messages(sock)
            messages.wait_for(lambda m: m == "READY=1", "READY=1")
            proc.send_signal(signal.SIGHUP)
            reloading = messages.wait_for(lambda m: m.startswith("RELOADING=1"), "RELOADING=1")
            after = messages.seen.index(reloading) + 1
            messages.wait_for(lambda m: m == "READY=1", "READY=1 after the reload", after=after)
            code = stop(proc)
            messages.wait_for(lambda m: m == "STOPPING=1", "STOPPING=1")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert "\nMONOTONIC_USEC=" in reloading
    assert messages.seen.count("READY=1") == 2
    assert "WATCHDOG=1" not in messages.seen  # WATCHDOG_PID names another process
