"""Peak RSS of `mvsep-watch run` filing a 2 GB input, beside its own idle RSS.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_big_input.py [--gb 2.0] [--audio]

The daemon runs as a subprocess (one natively watched inbox) against the emulator on
127.0.0.1, its plan caps and the emulator's upload limit raised above the input's size. Its
idle RSS is read once it said READY=1 (sd_notify) and settled; then a WAV of ``--gb`` GB
(10^9 bytes) is renamed into the inbox and the daemon sniffs, hashes, uploads, polls,
downloads and files it; its peak RSS (VmHWM, the whole life of the process) is read after
the job is filed. By default the WAV is 10 s of audio behind a ``JUNK`` chunk that fills it
to size (a valid RIFF file, written sparse: instant to make, every byte still read, hashed
and uploaded; its stems are small). ``--audio`` writes that many bytes of real 16-bit stereo
audio instead (the stems are as large as the input: minutes of emulated DSP and 2× the disk).
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import tempfile
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_process import DaemonProcess, memory_mb, write_config  # noqa: E402

from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402
from daemon.emulator.audio import write_test_audio  # noqa: E402
from daemon.journal import Journal  # noqa: E402

RATE, CHANNELS, WIDTH = 44100, 2, 2


def _frames(block: Path, seconds: float) -> bytes:
    write_test_audio(block, seconds, sample_rate=RATE, channels=CHANNELS)
    with wave.open(str(block), "rb") as w:
        frames = w.readframes(w.getnframes())
    block.unlink()
    return frames


def write_padded_wav(path: Path, size: int) -> None:
    """``size`` bytes: RIFF, fmt, a sparse JUNK chunk, then 10 s of audio in ``data``."""
    frames = _frames(path.with_name("block.wav"), 10.0)
    fmt = struct.pack("<HHIIHH", 1, CHANNELS, RATE, RATE * CHANNELS * WIDTH, CHANNELS * WIDTH, 16)
    fixed = 12 + (8 + len(fmt)) + 8 + 8 + len(frames)
    junk = size - fixed
    junk -= junk % 2  # chunks are word-aligned
    with path.open("wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", fixed + junk - 8) + b"WAVE")
        fh.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        fh.write(b"JUNK" + struct.pack("<I", junk))
        fh.seek(junk, os.SEEK_CUR)  # a hole: zeros on read, no disk
        fh.write(b"data" + struct.pack("<I", len(frames)) + frames)


def write_audio_wav(path: Path, size: int) -> None:
    """About ``size`` bytes of real audio (10 s of the test signal, repeated)."""
    frames = _frames(path.with_name("block.wav"), 10.0)
    total = (size - 44) // (CHANNELS * WIDTH) * (CHANNELS * WIDTH)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(WIDTH)
        out.setframerate(RATE)
        written = 0
        while written < total:
            chunk = frames[: total - written]
            out.writeframes(chunk)
            written += len(chunk)


def _wait_filed(journal_path: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal_path.exists():
            with Journal(journal_path, read_only=True) as journal:
                counts = journal.counts_by_state()
            for state in ("filed", "failed"):
                if counts.get(state):
                    return state
        time.sleep(0.5)
    raise TimeoutError(f"not filed within {timeout_s} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="input size in GB (10^9 bytes)")
    parser.add_argument("--audio", action="store_true", help="real audio all the way")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    size = int(args.gb * 1e9)
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.system()} {platform.release()}); load average {os.getloadavg()[0]:.2f}"
    )
    options = EmulatorOptions(
        premium=True, processing_s=1.0, premium_max_bytes=size + 10**8, premium_max_seconds=10**6
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-big-") as tmp,
        EmulatorServer(options, host="127.0.0.1", port=0) as emulator,
    ):
        root = Path(tmp)
        config = write_config(
            root,
            emulator.base_url,
            1,
            premium_max_file_mb=size / 1e6 + 100,
            premium_max_duration_min=10**4,
        )
        staged = root / "big.wav"
        (write_audio_wav if args.audio else write_padded_wav)(staged, size)
        daemon = DaemonProcess(config, root / "daemon.log")
        try:
            daemon.wait_ready()
            time.sleep(3.0)  # the start-up's own work ends
            idle = memory_mb(daemon.pid)
            started = time.monotonic()
            os.replace(staged, root / "in" / "inbox0" / "big.wav")
            outcome = _wait_filed(root / "state" / "journal.sqlite", args.timeout)
            elapsed = time.monotonic() - started
            after = memory_mb(daemon.pid)
        finally:
            code = daemon.stop()
        stem_mb = [p.stat().st_size / 1e6 for p in (root / "out").rglob("*.wav")]
        if outcome != "filed":
            print((root / "daemon.log").read_text()[-3000:])
    kind = "real audio" if args.audio else "10 s of audio in a sparse JUNK-padded RIFF"
    print(f"input: {size / 1e6:,.0f} MB WAV ({kind}); {outcome} {elapsed:.1f} s after the drop, "
          f"{len(stem_mb)} stems of {sum(stem_mb):,.1f} MB")  # fmt: skip
    print(f"  baseline: idle RSS after READY {idle['VmRSS']:.1f} MB")
    peak, grew = after["VmHWM"], after["VmHWM"] - idle["VmRSS"]
    print(f"  peak RSS (VmHWM) {peak:.1f} MB: +{grew:.1f} MB over idle; "
          f"RSS after filing {after['VmRSS']:.1f} MB; exit {code} on SIGTERM")  # fmt: skip
    return 0 if outcome == "filed" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
