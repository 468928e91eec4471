"""Peak RSS of `mvsep-watch separate` on a 1 GB WAV, against the emulator in another process.

Run by hand:  .venv/bin/python bench/bench_separate_memory.py [--gb 1.0] [--keep DIR]

Prints the input size, the wall time, and the peak resident set size of the `separate`
process (from wait4's rusage: the whole life of the process, upload, polling and the
download of every stem). The goal is under 100 MB whatever the file size: uploads stream from
disk and downloads stream to `.part` files.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx

from daemon.emulator.audio import write_test_audio

SAMPLE_RATE, CHANNELS, BYTES_PER_SAMPLE = 44100, 2, 2


def write_big_wav(path: Path, seconds: float, block_path: Path) -> None:
    """A long WAV quickly: 10 s of the test signal, its frames repeated to length."""
    write_test_audio(block_path, 10.0)
    with wave.open(str(block_path), "rb") as block:
        frames = block.readframes(block.getnframes())
    total = int(seconds * SAMPLE_RATE)
    per_block = len(frames) // (CHANNELS * BYTES_PER_SAMPLE)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(BYTES_PER_SAMPLE)
        out.setframerate(SAMPLE_RATE)
        written = 0
        while written < total:
            n = min(per_block, total - written)
            out.writeframes(frames[: n * CHANNELS * BYTES_PER_SAMPLE])
            written += n
    block_path.unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            httpx.get(f"{url}/api/app/algorithms", timeout=2.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"emulator at {url} did not come up")


def peak_rss_mb(ru_maxrss: int) -> float:
    # Linux reports KiB, macOS bytes.
    return ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=1.0, help="input size in GB (10^9 bytes)")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: temporary)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    song = work / "big.wav"
    seconds = args.gb * 1e9 / (SAMPLE_RATE * CHANNELS * BYTES_PER_SAMPLE)
    if not song.exists():
        print(f"writing {song} ({seconds / 60:.1f} min of 16-bit stereo)...", flush=True)
        write_big_wav(song, seconds, work / "block.wav")
    size_mb = song.stat().st_size / 1e6
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "daemon", "emulator", "--premium", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(url)
        env = {**os.environ, "MVSEP_API_TOKEN": "bench-token"}
        cmd = [
            sys.executable, "-m", "daemon", "--log-format", "json", "separate", str(song),
            "--no-config", "--base-url", url, "--sep-type", "40", "--format", "wav16",
            "--out", str(work / "out"), "--journal", str(work / "journal.sqlite"),
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        _, status, rusage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - started
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    code = os.waitstatus_to_exitcode(status)
    stems = sorted(p for p in (work / "out").rglob("*") if p.is_file())
    print(f"input: {size_mb:,.0f} MB ({seconds / 60:.1f} min)")
    print(f"separate exit code: {code}; wall time {elapsed:.1f} s")
    for stem in stems:
        print(f"  stem {stem.relative_to(work)}: {stem.stat().st_size / 1e6:,.0f} MB")
    print(f"peak RSS of separate: {peak_rss_mb(rusage.ru_maxrss):.1f} MB (goal: < 100 MB)")
    if code != 0:
        print(stderr.decode(errors="replace")[-3000:])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
