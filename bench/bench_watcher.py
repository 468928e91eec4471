"""Benchmark the inbox watcher: detection-to-ready latency and the startup scan.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_watcher.py [--files 10000] [--settle 1.0] [--poll 1.0]

Latency is measured from the file's last write (close) to ``on_ready``; the settle time is
a deliberate wait, so it is reported separately and subtracted ("overhead"). The startup
figure is the time from ``start()`` to the last of N pre-existing files reported, minus
settle, i.e. the time to scan them, stat them again and hand them on.
"""

from __future__ import annotations

import argparse
import logging
import queue
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.watcher import InboxWatcher, ReadyFile, WatchedInbox  # noqa: E402


def _quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _watcher(
    root: Path, *, poll: bool, settle_s: float, poll_s: float
) -> tuple[InboxWatcher, queue.Queue[tuple[ReadyFile, float]]]:
    ready: queue.Queue[tuple[ReadyFile, float]] = queue.Queue()
    spec = WatchedInbox(
        name="bench", path=root, poll=poll, poll_interval_s=poll_s, settle_s=settle_s
    )
    watcher = InboxWatcher(
        inboxes=[spec],
        on_ready=lambda r: ready.put((r, time.monotonic())),
        on_removed=lambda p: None,
    )
    return watcher, ready


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_latency(mode: str, *, files: int, settle_s: float, poll_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        root = Path(tmp)
        watcher, ready = _watcher(root, poll=mode == "polling", settle_s=settle_s, poll_s=poll_s)
        watcher.start()
        latencies: list[float] = []
        try:
            for i in range(files):
                path = root / f"take{i:03d}.wav"
                with open(path, "wb") as out:
                    out.write(b"\0" * 1_000_000)
                written = time.monotonic()
                _, at = ready.get(timeout=settle_s + poll_s + 30)
                latencies.append(at - written)
        finally:
            watcher.stop()
    overhead = [x - settle_s for x in latencies]
    print(
        f"latency {mode:8s} n={files:3d} settle={settle_s:.2f}s poll={poll_s:.2f}s | "
        f"total median {statistics.median(latencies):.3f}s max {max(latencies):.3f}s | "
        f"minus settle: median {statistics.median(overhead):.3f}s "
        f"p90 {_pct(overhead, 0.9):.3f}s max {max(overhead):.3f}s"
    )


def bench_startup(mode: str, *, files: int, settle_s: float, poll_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        root = Path(tmp)
        for i in range(files):
            folder = root / f"album{i // 100:03d}"
            if i % 100 == 0:
                folder.mkdir()
            (folder / f"track{i % 100:02d}.flac").write_bytes(b"fLaC")
        watcher, ready = _watcher(root, poll=mode == "polling", settle_s=settle_s, poll_s=poll_s)
        started = time.monotonic()
        watcher.start()
        start_returned = time.monotonic()
        last = started
        try:
            for _ in range(files):
                _, last = ready.get(timeout=settle_s + 120)
        finally:
            watcher.stop()
    total = last - started
    print(
        f"startup  {mode:8s} files={files} | start() {start_returned - started:.3f}s | "
        f"all reported {total:.3f}s | minus settle {total - settle_s:.3f}s "
        f"({(total - settle_s) / files * 1e6:.0f} us/file)"
    )


def bench_journal(*, files: int, settle_s: float) -> None:
    """Startup scan of ``files`` present at start, each journaled as a new job (native)."""
    from daemon.jobs import JobRequest, SourceFile
    from daemon.journal import Journal

    request = JobRequest(sep_type=40, options={}, output_format=1, algorithm_name="bench")
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        root = Path(tmp) / "in"
        for i in range(files):
            folder = root / f"album{i // 100:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"track{i % 100:02d}.flac").write_bytes(b"fLaC")
        watcher, ready = _watcher(root, poll=False, settle_s=settle_s, poll_s=1.0)
        with Journal(Path(tmp) / "journal.sqlite") as journal:
            started = time.monotonic()
            watcher.start()
            try:
                for _ in range(files):
                    found, _ = ready.get(timeout=settle_s + 300)
                    source = SourceFile(
                        path=found.path, inbox="bench", relative_path=found.relative_path,
                        preset="bench", request=request, output_dir=Path(tmp) / "out",
                        output_template="{name}/{stem}.{ext}", failed_dir=Path(tmp) / "failed",
                    )  # fmt: skip
                    journal.record_seen(source, size=found.size, mtime=found.mtime)
            finally:
                watcher.stop()
            total = time.monotonic() - started
            count = sum(journal.counts_by_state().values())
    print(
        f"journal  native   files={files} | all journaled {total:.3f}s | minus settle "
        f"{total - settle_s:.3f}s ({count} jobs in the journal)"
    )


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="files present at start")
    parser.add_argument("--latency-files", type=int, default=20)
    parser.add_argument("--settle", type=float, default=1.0, help="settle_s (seconds)")
    parser.add_argument("--poll", type=float, default=1.0, help="poll_interval_s (seconds)")
    parser.add_argument("--only-journal", action="store_true", help="just the journaling figure")
    args = parser.parse_args(argv)
    _quiet_logs()
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    if args.only_journal:
        bench_journal(files=args.files, settle_s=args.settle)
        return 0
    for mode in ("native", "polling"):
        bench_latency(mode, files=args.latency_files, settle_s=args.settle, poll_s=args.poll)
    for mode in ("native", "polling"):
        bench_startup(mode, files=args.files, settle_s=args.settle, poll_s=args.poll)
    bench_journal(files=args.files, settle_s=args.settle)
    print(f"peak RSS {_peak_rss_mib():.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
