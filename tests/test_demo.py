"""``mvsep-watch demo`` as a person runs it (a real subprocess, its emulator on loopback):
it says where its folders are and that they stay, and prints the stems of EVERY file
dropped in, not only its own song; Ctrl-C (SIGINT) stops it cleanly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from daemon_harness import wait_until

ROOT = Path(__file__).resolve().parents[1]


class Output:
    """The demo's stdout, read on a thread so the test can wait for lines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        self._stream = proc.stdout
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            self._queue.put(line)

    def close(self) -> None:
        """After the process ended: the rest of its output, then the pipe closed."""
        self._reader.join(timeout=30)
        self._stream.close()

    def has(self, text: str) -> bool:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return any(text in line for line in self.lines)

    @property
    def text(self) -> str:
        self.has("")
        return "".join(self.lines)


def test_demo_prints_the_stems_of_every_file_dropped_in(tmp_path: Path) -> None:
    from daemon.emulator.audio import write_test_audio

    inbox, stems = tmp_path / "in", tmp_path / "stems"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVSEP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "--log-format", "json", "demo", str(inbox), str(stems)]
        + ["--seconds", "2", "--processing", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    out = Output(proc)
    try:
        wait_until(lambda: out.has("The daemon keeps running"), "the demo song", 120)
        assert "these folders stay after Ctrl-C" in out.text
        work = next(ln for ln in out.lines if ln.startswith("demo folder")).split(": ", 1)[1]
        assert Path(work.strip()).is_dir()
        for name, folder in (("First Extra.wav", inbox), ("Second Extra.wav", inbox / "vocals")):
            staged = tmp_path / f".{name}"
            write_test_audio(staged, 1.5)
            os.replace(staged, folder / name)
        names = ("First Extra", "Second Extra")

        def stems_of(name: str) -> list[str]:
            return [ln for ln in out.lines if ln.startswith(f"  stem: {stems}") and name in ln]

        wait_until(
            lambda: (
                all(out.has(f"{n}.wav: filed") for n in names)
                and (len(stems_of("First Extra")), len(stems_of("Second Extra"))) == (4, 2)
            ),
            "the stems of both extra files (four-stems, vocals)",
            120,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        out.close()
    assert code == 0, out.text
    assert Path(work.strip()).is_dir()  # as it said: the folders stay
