"""Config-class problems found at start exit 2 (defect 4 of issue 8), with one line saying
what to fix and never the token, so that a service manager does not restart the daemon every
30 s for ever (it restarts on 1). Real subprocesses against the emulator over loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from daemon_harness import write_config

ROOT = Path(__file__).resolve().parents[1]
GOOD = "the-only-good-token"
BAD = "bad-token-do-not-print-me"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVSEP")}
    return {
        **env,
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        **extra,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "daemon", "--log-format", "json", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)


def _config_errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("config error:")]


def test_run_with_a_refused_token_exits_2_with_one_line(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator(tokens=(GOOD,))
    config = write_config(tmp_path, emu.base_url, mvsep={"api_token": BAD})
    done = _run(["--config", str(config), "run"], _env(tmp_path))
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = _config_errors(done)
    assert "token" in line and "MVSEP_API_TOKEN" in line
    assert BAD not in done.stdout + done.stderr
    assert emu.stats["calls"].get("create", 0) == 0


def test_separate_with_a_refused_token_exits_2_with_one_line(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(tokens=(GOOD,))
    song = audio_file("song.wav", seconds=1.0)
    args = ["separate", "--no-config", "--base-url", emu.base_url, str(song)]
    args += ["--sep-type", "40", "--journal", str(tmp_path / "j.sqlite"), "--out", str(tmp_path)]
    done = _run(args, _env(tmp_path, MVSEP_API_TOKEN=BAD))
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = _config_errors(done)
    assert "token" in line
    assert BAD not in done.stdout + done.stderr
    assert emu.jobs == {}


def test_the_good_token_is_not_refused(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The same command with the token the emulator knows separates the file (exit 0)."""
    emu = make_emulator(tokens=(GOOD,))
    song = audio_file("song.wav", seconds=1.0)
    args = ["separate", "--no-config", "--base-url", emu.base_url, str(song)]
    args += ["--sep-type", "40", "--journal", str(tmp_path / "j.sqlite"), "--out", str(tmp_path)]
    done = _run(args, _env(tmp_path, MVSEP_API_TOKEN=GOOD))
    assert done.returncode == 0, done.stderr[-2000:]
    assert _config_errors(done) == [] and len(emu.jobs) == 1


def test_run_with_a_journal_path_that_cannot_be_a_file_exits_2(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator()
    config = write_config(tmp_path, emu.base_url)
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["journal"]["path"] = str(tmp_path / "a-file" / "journal.sqlite")
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    done = _run(["--config", str(config), "run"], _env(tmp_path))
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = _config_errors(done)
    assert "[journal] path" in line and "Traceback" not in done.stderr
    assert emu.stats["calls"].get("user", 0) == 0  # found before MVSEP was asked anything
