"""Idle CPU of `mvsep-watch run` with 5 inboxes, beside a sleeping Python measured alongside.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_idle.py [--seconds 60] [--inboxes 5]

The daemon runs as a subprocess against the emulator on 127.0.0.1 with 5 natively watched,
empty inboxes. Once it has said READY=1 (sd_notify) and settled for a few seconds, its CPU
time (utime + stime from /proc/PID/stat) is read over ``--seconds``; over the same window, the
same for ``python -c "import time; time.sleep(N)"`` started just before (the baseline: what an
idle interpreter costs on this machine, under this load). Printed as a share of one core, in
clock ticks (10 ms: over 60 s one tick is 0.017 %) and, finer, the nanoseconds its threads
spent on a CPU (``/proc/PID/task/*/schedstat``). Which thread costs what:
``bench/idle_threads.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_process import DaemonProcess, cpu_seconds, write_config  # noqa: E402

from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402


def on_cpu_s(pid: int) -> float:
    """Seconds the threads of ``pid`` running now have spent on a CPU (schedstat, in ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return total / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--inboxes", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after READY")
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.system()} {platform.release()}); load average {os.getloadavg()[0]:.2f}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp,
        EmulatorServer(EmulatorOptions(premium=True), host="127.0.0.1", port=0) as emulator,
    ):
        root = Path(tmp)
        config = write_config(root, emulator.base_url, args.inboxes)
        daemon = DaemonProcess(config, root / "daemon.log")
        try:
            ready_s = daemon.wait_ready()
            time.sleep(args.warmup)  # the start-up's own work (catalogue, first scans) ends
            sleeper = subprocess.Popen(
                [sys.executable, "-c", f"import time; time.sleep({args.seconds + 30})"]
            )
            time.sleep(1.0)  # its interpreter start is not idle time
            d0, s0, t0 = cpu_seconds(daemon.pid), cpu_seconds(sleeper.pid), time.monotonic()
            n0, b0 = on_cpu_s(daemon.pid), on_cpu_s(sleeper.pid)
            time.sleep(args.seconds)
            d1, s1, t1 = cpu_seconds(daemon.pid), cpu_seconds(sleeper.pid), time.monotonic()
            n1, b1 = on_cpu_s(daemon.pid), on_cpu_s(sleeper.pid)
            sleeper.kill()
            sleeper.wait()
        finally:
            code = daemon.stop()
    window = t1 - t0
    print(f"daemon: {args.inboxes} inboxes, READY after {ready_s:.2f} s; exit {code} on SIGTERM")
    print(f"  idle CPU over {window:.1f} s: {d1 - d0:.2f} s = {(d1 - d0) / window:.3%} of a core")
    print(
        f"  baseline `python -c time.sleep`: {s1 - s0:.2f} s = {(s1 - s0) / window:.3%} of a core"
        f" (clock tick {1 / os.sysconf('SC_CLK_TCK'):.2f} s)"
    )
    print(
        f"  on a CPU (schedstat): daemon {(n1 - n0) * 1000:.1f} ms = {(n1 - n0) / window:.4%},"
        f" baseline {(b1 - b0) * 1000:.1f} ms = {(b1 - b0) / window:.4%} of a core"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
