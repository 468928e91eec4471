"""`mvsep-watch separate` as a user runs it: a subprocess talking to the emulator over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.audio import write_test_audio

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "sep-test-token-42"


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("song") / "three minutes.wav"
    write_test_audio(path, 180.0)
    return path


@pytest.fixture(scope="module")
def premium_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorOptions(premium=True, processing_s=0.2), port=0) as server:
        yield server


def separate(base_url: str, tmp: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "daemon", "--log-format", "json", "separate", "--no-config",
        "--base-url", base_url, "--journal", str(tmp / "journal.sqlite"), *args,
    ]  # fmt: skip
    env = {
        **os.environ,
        "MVSEP_API_TOKEN": TOKEN,
        # the catalogue cache and default journal go to the test's folders, not $HOME
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
    }
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen
    )


TWO_STEMS = ("40", ["Vocals", "Instrumental"])
FOUR_STEMS = ("20", ["Vocals", "Drums", "Bass", "Other"])
FLAC24 = ("flac24", "flac", "PCM_24")
WAV16 = ("wav16", "wav", "PCM_16")


@pytest.mark.parametrize(
    ("sep_type", "stems", "fmt", "ext", "subtype"),
    [
        pytest.param(*TWO_STEMS, *FLAC24, id="2stems-flac24"),
        pytest.param(*FOUR_STEMS, *WAV16, id="4stems-wav16"),
        pytest.param(*TWO_STEMS, *WAV16, id="2stems-wav16"),
        pytest.param(*FOUR_STEMS, *FLAC24, id="4stems-flac24"),
    ],
)
@pytest.mark.timeout(900)
def test_three_minute_song(
    tmp_path: Path,
    song: Path,
    premium_emulator: EmulatorServer,
    sep_type: str,
    stems: list[str],
    fmt: str,
    ext: str,
    subtype: str,
) -> None:
    out = tmp_path / "out"
    proc = separate(
        premium_emulator.base_url, tmp_path, str(song), "--sep-type", sep_type, "--format", fmt,
        "--out", str(out),
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        proc.kill()  # never leave a separate behind when the test fails
    assert proc.returncode == 0, stderr[-3000:]
    folder = out / song.stem
    for stem in stems:
        path = folder / f"{song.stem} - {stem}.{ext}"
        assert str(path) in stdout
        info = soundfile.info(str(path))
        assert info.subtype == subtype
        assert abs(info.duration - 180.0) <= 0.1, (path, info.duration)
        assert soundfile.read(str(path), frames=44100)[0].any()  # real audio, not silence
    assert song.exists()  # separate never touches its input
    assert "uploading" in stderr and "downloading" in stderr


class StderrLines:
    """Collect a subprocess's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for_event(self, event: str, timeout_s: float) -> bool:
        def seen() -> bool:
            return any(json.loads(x).get("event") == event for x in self.lines if x[:1] == "{")

        with self._seen:
            return self._seen.wait_for(seen, timeout=timeout_s)

    def text(self) -> str:
        """Everything read so far (all of it once the process has exited)."""
        self._thread.join(timeout=30)
        with self._seen:
            return "".join(self.lines)


def test_ctrl_c_cancels_a_waiting_job_and_refunds(
    tmp_path: Path, audio_file: Any, make_emulator: Any
) -> None:
    emulator = make_emulator(premium=True, waiting_s=60.0, processing_s=0.2)
    song = audio_file("wait.wav", seconds=3.0)
    proc = separate(
        emulator.base_url, tmp_path, str(song), "--sep-type", "40", "--out", str(tmp_path)
    )
    stderr = StderrLines(proc)
    try:
        # Ctrl-C once the hash is stored: the job is known to be waiting at MVSEP
        assert stderr.wait_for_event("job submitted", timeout_s=120), stderr.text()[-2000:]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        log = stderr.text()
        for pipe in (proc.stdout, proc.stderr):
            assert pipe is not None
            pipe.close()
    assert proc.returncode == 130, log[-2000:]
    (job,) = emulator.jobs.values()
    assert job.state == "cancelled"
    assert emulator.stats["cancels"] >= 1


def test_rerun_after_kill_resumes_instead_of_resubmitting(
    tmp_path: Path, audio_file: Any, make_emulator: Any
) -> None:
    emulator = make_emulator(premium=True, processing_s=3.0)
    song = audio_file("resume.wav", seconds=3.0)
    args = (str(song), "--sep-type", "40", "--format", "wav16", "--out", str(tmp_path / "out"))
    first = separate(emulator.base_url, tmp_path, *args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not emulator.jobs:
        time.sleep(0.05)
    time.sleep(0.5)
    first.kill()
    first.communicate(timeout=30)
    second = separate(emulator.base_url, tmp_path, *args)
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr[-2000:]
    assert len(emulator.jobs) == 1
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 2


def test_cut_off_file_fails_at_once_without_a_create(
    tmp_path: Path, audio_file: Any, make_emulator: Any
) -> None:
    """A file named on the command line is complete: cut off means damaged, not arriving."""
    emulator = make_emulator(premium=True, processing_s=0.2)
    whole = audio_file("whole.wav", seconds=2.0).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: len(whole) // 2])
    proc = separate(
        emulator.base_url, tmp_path, str(cut), "--sep-type", "40", "--out", str(tmp_path / "out")
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "cut off" in stdout + stderr
    assert emulator.jobs == {}
    assert cut.exists()  # separate never moves its inputs


def test_every_opt_n_the_cli_parses_reaches_the_preset() -> None:
    """`--opt N KEY` for N = 1..10 (and `--opt1`..`--opt4`): none is dropped on the way."""
    from daemon.cli import parse_args
    from daemon.config import OPTION_NUMBERS, Settings
    from daemon.separate import requested_preset

    argv = ["separate", "song.wav", "--sep-type", "121", "--opt1", "5"]
    for n in OPTION_NUMBERS[1:]:
        argv += ["--opt", str(n), f"key{n}"]
    name, preset = requested_preset(parse_args(argv), Settings())
    assert name == "command-line"
    expected = {"add_opt1": "5"} | {f"add_opt{n}": f"key{n}" for n in OPTION_NUMBERS[1:]}
    assert preset.options() == expected


def test_options_five_to_ten_are_sent_to_mvsep(
    tmp_path: Path, audio_file: Any, make_emulator: Any
) -> None:
    """Type 121 has add_opt1..add_opt10; what `--opt N` names is what the create carries."""
    emulator = make_emulator(premium=True, processing_s=0.2)
    song = audio_file("ten.wav", seconds=1.0)
    proc = separate(
        emulator.base_url, tmp_path, str(song), "--sep-type", "121", "--out", str(tmp_path / "o"),
        "--opt", "5", "352", "--opt", "7", "0.8", "--opt", "9", "German", "--opt", "10", "hi",
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    (job,) = emulator.jobs.values()
    sent = {k: v for k, v in job.options.items() if k in ("add_opt5", "add_opt7", "add_opt9")}
    assert sent == {"add_opt5": "352", "add_opt7": "0.8", "add_opt9": "german"}
    assert job.options.get("add_opt10") == "hi"
