"""Where an idle daemon's CPU goes: each thread's CPU time and wake-ups over a window.

Run by hand (not part of pytest)::

    .venv/bin/python bench/idle_threads.py [--seconds 60] [--inboxes 5]

`mvsep-watch run` runs in this very process (``daemon.cli.main`` on the main thread, against
the emulator on 127.0.0.1 with N natively watched, empty inboxes), so each OS thread can be
named: after a warm-up a sampler thread reads ``/proc/self/task/TID/schedstat`` (its time
on a CPU, in ns) and ``.../status`` (voluntary context switches: one per wake-up of a
sleeping thread) of every thread, waits ``--seconds``, reads them again, prints one line
per thread (busiest first) and stops the daemon with SIGTERM. The daemon's own figure is
bench_idle.py's (a subprocess, nothing else in it); this one says which loop costs what.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_process import TOKEN, write_config  # noqa: E402

from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402


def thread_stats() -> dict[int, tuple[float, int]]:
    """Native thread id -> (CPU seconds, voluntary context switches) of this process."""
    out: dict[int, tuple[float, int]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            on_cpu_ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text()
        except OSError:
            continue  # ended meanwhile
        switches = 0
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches = int(line.split()[1])
        out[int(task.name)] = (on_cpu_ns / 1e9, switches)
    return out


def sample(seconds: float, warmup_s: float, emulator_ids: set[int]) -> None:
    time.sleep(warmup_s)  # the daemon's start (catalogue, first scans) ends
    me = threading.get_native_id()
    before, t0 = thread_stats(), time.monotonic()
    time.sleep(seconds)
    after, t1 = thread_stats(), time.monotonic()
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    window = t1 - t0
    rows = []
    for tid, (cpu, switches) in after.items():
        if tid == me or (tid in emulator_ids and tid != threading.main_thread().native_id):
            continue
        cpu0, sw0 = before.get(tid, (0.0, 0))
        rows.append((cpu - cpu0, (switches - sw0) / window, names.get(tid, f"tid {tid}")))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    out = sys.__stdout__
    print(
        f"daemon threads over {window:.1f} s: {total * 1000:.1f} ms CPU"
        f" = {total / window:.3%} of a core",
        file=out,
    )
    for cpu, rate, name in rows:
        print(f"  {name:<28} {cpu * 1000:8.1f} ms CPU  {rate:7.2f} wake-ups/s", file=out)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--inboxes", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=8.0)
    args = parser.parse_args(argv)
    from daemon import cli

    with (
        tempfile.TemporaryDirectory(prefix="bench-idle-threads-") as tmp,
        EmulatorServer(EmulatorOptions(premium=True), host="127.0.0.1", port=0) as emulator,
    ):
        emulator_ids = {t.native_id for t in threading.enumerate() if t.native_id is not None}
        root = Path(tmp)
        config = write_config(root, emulator.base_url, args.inboxes)
        os.environ["MVSEP_API_TOKEN"] = TOKEN
        threading.Thread(
            target=sample, args=(args.seconds, args.warmup, emulator_ids), daemon=True
        ).start()
        code = cli.main(["--config", str(config), "--log-format", "json", "run"])
    print(f"exit {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
