"""`mvsep-watch demo`: the embedded emulator and a real daemon on demo folders.

It starts the MVSEP emulator on a free loopback port, writes a config for it (with tomli-w,
so you can read and reuse it), starts the daemon exactly as `run` does, drops a generated
song into the inbox and prints the stems as they appear. Then it keeps running and says
where to drop more files, until Ctrl-C (or, with ``--once``, it exits).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import tomli_w

from daemon.config import load_settings
from daemon.jobs import JobState
from daemon.journal import Journal
from daemon.service import Daemon

log = structlog.get_logger(__name__)
DEMO_TOKEN = "demo-token-0123456789"


def demo_config(work: Path, inbox: Path, output: Path, base_url: str) -> dict[str, Any]:
    return {
        "mvsep": {"base_url": base_url, "api_token": DEMO_TOKEN},
        "journal": {"path": str(work / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(work / "state" / "algorithms.json")},
        "presets": {
            "four-stems": {
                "sep_type": "Demucs4 HT (vocals, drums, bass, other)",
                "output_format": "flac24",
            },
            "vocals": {"sep_type": 40, "output_format": "wav16"},
        },
        "inbox": [
            {
                "path": str(inbox),
                "preset": "four-stems",
                "output": str(output),
                "name": "demo",
                "settle_s": 1.0,
                "subfolders_as_presets": True,
                "after_success": "archive",
                "archive_dir": str(work / "processed"),
                "failed_dir": str(work / "failed"),
            }
        ],
        "watch": {"rescan_interval_s": 30.0},
    }


def run_demo(args: argparse.Namespace) -> int:
    from daemon.emulator import EmulatorOptions, EmulatorServer

    work = Path(tempfile.mkdtemp(prefix="mvsep-watch-demo-"))
    inbox = Path(os.path.abspath(args.inbox or work / "inbox"))
    output = Path(os.path.abspath(args.output or work / "stems"))
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "vocals").mkdir(exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    options = EmulatorOptions(premium=True, waiting_s=1.0, processing_s=args.processing)
    with EmulatorServer(options, host="127.0.0.1", port=0) as emulator:
        config_path = work / "config.toml"
        config_path.write_bytes(
            tomli_w.dumps(demo_config(work, inbox, output, emulator.base_url)).encode()
        )
        settings, _ = load_settings(config_path, env={})
        _say(f"MVSEP emulator on {emulator.base_url} (premium account, 10 slots)")
        _say_folders(work, inbox, output)
        daemon = Daemon(settings, config_label=str(config_path))
        daemon.start()
        try:
            return _demo(daemon, args, inbox, output, work)
        finally:
            daemon.stop(timeout_s=10.0)


def _say_folders(work: Path, inbox: Path, output: Path) -> None:
    _say(f"demo folder (config, journal, archived and failed inputs): {work}")
    _say(f"  inbox: {inbox}\n  stems: {output}")
    _say(
        "  these folders stay after Ctrl-C, so you can look at the stems; "
        f"remove them with: rm -r '{work}'"
        + ("" if _inside(inbox, work) and _inside(output, work) else "; your own folders are kept")
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _demo(daemon: Daemon, args: argparse.Namespace, inbox: Path, output: Path, work: Path) -> int:
    assert daemon.journal is not None
    reporter = JobReporter(daemon.journal)
    song = _drop_song(inbox, args.seconds)
    _say(f"dropped {song.name} ({args.seconds:.0f} s) into {inbox}")
    ok = _wait_for_song(reporter, song, timeout_s=120.0 + args.processing * 4)
    if not ok:
        _say("the demo song was not filed in time: see the log above")
        return 1
    if args.once:
        return 0
    _say(
        f"\nThe daemon keeps running. Drop audio files into {inbox} "
        f"(or {inbox / 'vocals'} for the vocals preset);\n"
        f"their stems appear under {output} and are listed here. Ctrl-C stops "
        f"(the folders stay: rm -r '{work}')."
    )
    _watch_until_signal(reporter)
    return 0


class JobReporter:
    """Prints each job's state changes, and its stems (or its error) once it ends: for every
    file dropped in, not only the demo's own song."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._shown: dict[int, str] = {}
        self.ended: dict[Path, JobState] = {}

    def poll(self) -> None:
        for job in reversed(self._journal.recent_jobs(200)):
            state = f"{job.state}" + (f" ({job.mvsep_status})" if job.mvsep_status else "")
            if self._shown.get(job.id) == state:
                continue
            self._shown[job.id] = state
            _say(f"  {job.source.path.name}: {state}")
            if job.state in _ENDED:
                _show_outputs(job.outputs, job.last_error)
                self.ended[job.source.path] = job.state


_ENDED = (JobState.FILED, JobState.FAILED, JobState.CANCELLED)


def _drop_song(inbox: Path, seconds: float) -> Path:
    """Write the song next to the inbox, then rename it in, as a finished copy would land."""
    from daemon.emulator.audio import write_test_audio

    staging = inbox.parent / f".demo-{os.getpid()}.wav"
    write_test_audio(staging, seconds)
    song = inbox / "Demo Song.wav"
    os.replace(staging, song)
    return song


def _wait_for_song(reporter: JobReporter, song: Path, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reporter.poll()
        if song in reporter.ended:
            return reporter.ended[song] == JobState.FILED
        time.sleep(0.25)  # a person is watching: a quarter-second refresh
    return False


def _show_outputs(outputs: tuple[str, ...], error: str | None) -> None:
    if error and not outputs:
        _say(f"  failed: {error}")
    for output in outputs:
        path = Path(output)
        _say(f"  stem: {path}  ({_describe_audio(path)})")


def _describe_audio(path: Path) -> str:
    try:
        import soundfile

        info = soundfile.info(str(path))
        return f"{info.duration:.1f} s, {info.samplerate} Hz, {info.subtype_info}"
    except Exception:  # a sidecar or a format soundfile cannot read
        return f"{path.stat().st_size:,} bytes"


def _watch_until_signal(reporter: JobReporter) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        reporter.poll()


def _say(text: str) -> None:
    print(text, flush=True)
