"""``mvsep-watch init``: a commented config from flags or prompts (a real pty), never
overwritten without --force, the token kept out of it unless given; what it writes passes
check-config against the emulator on loopback."""

from __future__ import annotations

import os
import pty
import select
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "init-token-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key == "MVSEP_API_TOKEN" or key.startswith("MVSEP_WATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the default cache


@pytest.fixture
def emu(make_emulator: Callable[..., Any]) -> Any:
    return make_emulator(tokens=(TOKEN,))


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def init(tmp_path: Path, base_url: str, *extra: str) -> tuple[int, Path]:
    target = tmp_path / "conf" / "config.toml"
    argv = ["init", str(target), "--base-url", base_url, "--inbox", str(tmp_path / "in")]
    code = main([*argv, "--output", str(tmp_path / "out"), *extra])
    return code, target


def check(path: Path) -> int:
    return main(["--config", str(path), "check-config"])


def test_flags_write_a_commented_config_that_passes_check_config(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = token_file(tmp_path)
    code, target = init(tmp_path, emu.base_url, "--token-file", str(tok), "--preset", "four-stems")
    assert code == 0
    text = target.read_text()
    assert text.startswith("# mvsep-watch configuration")
    assert TOKEN not in text
    data = tomllib.loads(text)
    assert data["mvsep"] == {"base_url": emu.base_url, "api_token_file": str(tok)}
    assert data["presets"]["four-stems"]["sep_type"] == "Demucs4 HT (vocals, drums, bass, other)"
    assert data["inbox"] == [
        {"path": str(tmp_path / "in"), "preset": "four-stems", "output": str(tmp_path / "out")}
    ]
    assert (tmp_path / "in").is_dir() and (tmp_path / "out").is_dir()
    out = capsys.readouterr()
    assert "checked against the live MVSEP catalogue" in out.err
    assert f"--config '{target}' check-config" in out.out
    assert check(target) == 0, capsys.readouterr().out


def test_the_default_path_is_the_config_other_commands_read(
    tmp_path: Path, emu: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere" / "mine.toml"
    monkeypatch.setenv("MVSEP_WATCH_CONFIG", str(target))
    argv = ["init", "--base-url", emu.base_url, "--inbox", str(tmp_path / "in"), "--yes"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    assert target.is_file()
    assert "next: mvsep-watch check-config" in capsys.readouterr().out
    monkeypatch.setenv("MVSEP_API_TOKEN", TOKEN)
    assert main(["check-config"]) == 0


def test_never_overwrites_without_force(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "conf" / "config.toml"
    target.parent.mkdir()
    target.write_text("# mine\n")
    code, _ = init(tmp_path, emu.base_url, "--yes")
    assert code == 2 and target.read_text() == "# mine\n"
    assert "pass --force" in capsys.readouterr().err
    code, _ = init(tmp_path, emu.base_url, "--yes", "--force")
    assert code == 0 and "[presets.vocals]" in target.read_text()


def test_a_token_given_explicitly_is_written_and_the_file_made_private(
    tmp_path: Path, emu: Any
) -> None:
    code, target = init(tmp_path, emu.base_url, "--token", TOKEN, "--sep-type", "49")
    assert code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = tomllib.loads(target.read_text())
    assert data["mvsep"]["api_token"] == TOKEN
    assert data["presets"]["mvsep-karaoke"]["sep_type"] == 49
    assert check(target) == 0


def test_without_a_token_the_config_points_at_the_environment(
    tmp_path: Path, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, target = init(tmp_path, emu.base_url, "--yes")
    assert code == 0
    text = target.read_text()
    assert "set $MVSEP_API_TOKEN" in text and "api_token" not in tomllib.loads(text)["mvsep"]
    assert check(target) == 2  # no token anywhere
    monkeypatch.setenv("MVSEP_API_TOKEN", TOKEN)
    assert check(target) == 0


def test_an_unknown_algorithm_writes_nothing_and_names_the_closest(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, target = init(tmp_path, emu.base_url, "--sep-type", "Roformer", "--yes")
    assert code == 2 and not target.exists()
    assert "closest: " in capsys.readouterr().err


def test_offline_the_built_in_catalogue_is_used_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code, target = init(tmp_path, dead, "--sep-type", "Demucs4 HT", "--yes")
    assert code == 0
    assert "the built-in catalogue" in capsys.readouterr().err
    assert tomllib.loads(target.read_text())["presets"]["demucs4-ht"]["sep_type"] == 20


def _converse(argv: list[str], answers: list[tuple[str, str]], env: dict[str, str]) -> str:
    """Run ``argv`` on a real pseudo-terminal, answering each prompt once it is shown."""
    parent, child = pty.openpty()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env, cwd=ROOT)
    os.close(child)
    seen = b""
    try:
        for prompt, answer in answers:
            deadline = time.monotonic() + 30
            while prompt.encode() not in seen:
                assert time.monotonic() < deadline, f"no prompt {prompt!r} in {seen!r}"
                if select.select([parent], [], [], 0.5)[0]:
                    seen += os.read(parent, 4096)
            seen = seen.split(prompt.encode(), 1)[1]
            os.write(parent, answer.encode() + b"\n")
        proc.wait(timeout=30)
        while select.select([parent], [], [], 0.1)[0]:
            try:
                seen += os.read(parent, 4096)
            except OSError:  # the other side closed
                break
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, seen
    return seen.decode(errors="replace")


def test_prompts_on_a_terminal_save_the_token_privately(tmp_path: Path, emu: Any) -> None:
    target = tmp_path / "config.toml"
    tok = tmp_path / "secret" / "token"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVSEP_")}
    argv = [sys.executable, "-m", "daemon", "init", str(target), "--base-url", emu.base_url]
    out = _converse(
        argv,
        [
            ("Token file", str(tok)),
            ("API token", TOKEN),
            ("Inbox folder to watch", str(tmp_path / "drop")),
            ("Folder for the stems", str(tmp_path / "stems")),
            ("Preset", "karaoke"),
        ],
        env,
    )
    assert TOKEN not in out  # typed hidden, never echoed
    assert tok.read_text().strip() == TOKEN
    assert stat.S_IMODE(tok.stat().st_mode) == 0o600
    data = tomllib.loads(target.read_text())
    assert data["mvsep"]["api_token_file"] == str(tok)
    assert data["inbox"][0]["path"] == str(tmp_path / "drop")
    assert data["inbox"][0]["preset"] == "karaoke"
    assert check(target) == 0


def test_a_token_file_not_there_yet_comes_with_the_command_that_creates_it(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = tmp_path / "private" / "token"
    tok.parent.mkdir()
    code, target = init(tmp_path, emu.base_url, "--token-file", str(tok), "--yes")
    assert code == 0 and not tok.exists()
    hint = next(ln for ln in capsys.readouterr().out.splitlines() if "does not exist yet" in ln)
    command = hint.split("readable by you only: ", 1)[1].replace("YOUR-TOKEN", TOKEN)
    subprocess.run(["sh", "-c", command], check=True, timeout=30)
    assert stat.S_IMODE(tok.stat().st_mode) == 0o600
    assert check(target) == 0
