"""What bench_idle.py and bench_big_input.py share: `mvsep-watch run` as a subprocess.

The daemon is started with a config of N inboxes against an emulator on 127.0.0.1 and waited
for on its own readiness signal (``READY=1`` on an sd_notify socket the benchmark listens on,
as systemd would); /proc/PID gives its CPU time and memory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

TOKEN = "bench-daemon-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_config(root: Path, base_url: str, inboxes: int, **mvsep: Any) -> Path:
    """A config of ``inboxes`` natively watched inboxes; ``mvsep`` adds [mvsep] keys."""
    entries = []
    for n in range(inboxes):
        (root / "in" / f"inbox{n}").mkdir(parents=True)
        entries.append(
            {
                "name": f"inbox{n}",
                "path": str(root / "in" / f"inbox{n}"),
                "preset": "vocals",
                "output": str(root / "out" / f"inbox{n}"),
                "after_success": "keep",
            }
        )
    config = {
        "mvsep": {"base_url": base_url, **mvsep},
        "journal": {"path": str(root / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(root / "state" / "algorithms.json")},
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": entries,
    }
    path = root / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


class DaemonProcess:
    """`mvsep-watch --config CONFIG run`, started and waited for until READY=1."""

    def __init__(self, config: Path, log: Path) -> None:
        self._name = f"bench-notify-{os.getpid()}-{time.monotonic_ns()}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self._name)
        env = {**os.environ, "MVSEP_API_TOKEN": TOKEN, "NOTIFY_SOCKET": "@" + self._name}
        exe = str(Path(sys.executable).with_name("mvsep-watch"))
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [exe, "--config", str(config), "--log-format", "json", "run"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds until the daemon said READY=1."""
        started = time.monotonic()
        deadline = started + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited {self.proc.returncode} before READY")
            self._sock.settimeout(min(left, 1.0))
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            if b"READY=1" in data.split(b"\n"):
                return time.monotonic() - started
        raise TimeoutError(f"no READY=1 within {timeout_s} s")

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._sock.close()
        self._log.close()
        return code


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (the peak so far) of ``pid``, in MB (10^6 bytes)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024 / 1e6
    return out
