"""``mvsep-watch check-config``: every problem at once, one line each; exit 0 ok, 1 warnings,
2 errors. The token, base URL and catalogue cases run against the emulator on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from daemon.cli import main

GOOD_TOKEN = "good-token-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key == "MVSEP_API_TOKEN" or key.startswith("MVSEP_WATCH_"):
            monkeypatch.delenv(key)


@pytest.fixture
def emu(make_emulator: Callable[..., Any]) -> Any:
    return make_emulator(tokens=(GOOD_TOKEN,))


def dead_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def write_config(
    tmp: Path,
    base_url: str,
    *,
    token: str | None = GOOD_TOKEN,
    presets: dict[str, Any] | None = None,
    inbox: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    mvsep: dict[str, Any] = {"base_url": base_url}
    if token is not None:
        (tmp / "token").write_text(token + "\n")
        (tmp / "token").chmod(0o600)
        mvsep["api_token_file"] = "token"
    config = {
        "mvsep": mvsep,
        "journal": {"path": "state/journal.sqlite"},
        "catalogue": {"cache_path": "state/algorithms.json"},
        "presets": presets or {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": [{"path": "in", "preset": "vocals", "output": "out", **(inbox or {})}],
    }
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(config) + extra, encoding="utf-8")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["--config", str(path), "check-config"])
    return code, capsys.readouterr().out.strip().splitlines()


def lines_of(lines: list[str], level: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{level}: ")]


def test_a_good_config_is_ok_and_says_what_was_checked(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(write_config(tmp_path, emu.base_url), capsys)
    assert code == 0, lines
    assert lines[-1].endswith(": OK")
    assert any("token accepted" in line for line in lines_of(lines, "ok"))
    assert any("checked against the live MVSEP catalogue" in line for line in lines)
    assert emu.stats["calls"]["user"] == 1  # the token costs one API call


def test_every_unknown_key_and_the_missing_token_at_once(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = "\n[engin]\nmax_transfers = 2\n[watch]\nrescan_intervall_s = 5\nbogus = 1\n"
    code, lines = check(write_config(tmp_path, emu.base_url, token=None, extra=extra), capsys)
    assert code == 2
    errors = "\n".join(lines_of(lines, "error"))
    assert "engin: unknown key — did you mean [engine]?" in errors
    assert "[watch] rescan_intervall_s: unknown key — did you mean rescan_interval_s?" in errors
    assert "[watch] bogus: unknown key" in errors
    assert "[mvsep] api_token: no API token" in errors
    assert lines[-1].endswith("4 errors, 0 warnings")


def test_a_refused_token_is_an_error_that_never_shows_it(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(write_config(tmp_path, emu.base_url, token="wrong-token-98765"), capsys)
    assert code == 2
    assert any("refused the API token" in line for line in lines_of(lines, "error"))
    assert not any("wrong-token-98765" in line for line in lines)


def test_a_dead_base_url_is_an_error_and_presets_fall_back_to_the_cache(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    presets = {"vocals": {"sep_type": 40, "add_opt1": "no such model"}}
    code, _ = check(write_config(tmp_path, emu.base_url, presets=presets), capsys)
    assert code == 2  # the cache is written by this first, live check
    code, lines = check(write_config(tmp_path, dead_url(), presets=presets), capsys)
    assert code == 2
    errors = lines_of(lines, "error")
    assert any("[mvsep] base_url" in line and "does not answer" in line for line in errors)
    assert any("no choice 'no such model'" in line for line in errors)
    assert any("the cached catalogue of" in line for line in lines_of(lines, "note"))
    assert any("api_token: not checked" in line for line in lines_of(lines, "warning"))


def test_a_dead_base_url_without_a_cache_says_presets_were_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(write_config(tmp_path, dead_url()), capsys)
    assert code == 2
    assert any("[presets]: not checked" in line for line in lines_of(lines, "warning"))


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ({"sep_type": "Bogus Roformer"}, "no algorithm named 'Bogus Roformer' — closest:"),
        ({"sep_type": 9999}, "no separation type 9999 in the MVSEP catalogue"),
        ({"sep_type": 40, "add_opt1": "ver 1999"}, "no choice 'ver 1999' for 'Vocal model type'"),
        ({"sep_type": 40, "add_opt9": "1"}, "'add_opt9' is not an option of"),
    ],
)
def test_presets_unknown_to_the_live_catalogue_are_errors(
    tmp_path: Path,
    emu: Any,
    capsys: pytest.CaptureFixture[str],
    preset: dict[str, Any],
    expected: str,
) -> None:
    presets = {"vocals": {"sep_type": 40}, "other": preset}
    code, lines = check(write_config(tmp_path, emu.base_url, presets=presets), capsys)
    assert code == 2
    errors = lines_of(lines, "error")
    assert len(errors) == 1 and "[presets.other]" in errors[0] and expected in errors[0]
    assert any("the live MVSEP catalogue" in line for line in lines_of(lines, "note"))


def test_a_missing_inbox_folder_is_a_warning_naming_it(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, emu.base_url, inbox={"path": "share/drop", "name": "nas"})
    code, lines = check(path, capsys)
    assert code == 1
    warnings = lines_of(lines, "warning")
    assert len(warnings) == 1
    assert "'nas'" in warnings[0] and str(tmp_path / "share" / "drop") in warnings[0]
    assert not lines_of(lines, "error")


def test_an_output_folder_that_cannot_be_created_is_an_error(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a folder")
    code, lines = check(write_config(tmp_path, emu.base_url, inbox={"output": "file/x"}), capsys)
    assert code == 2
    assert any("output: " in line and "cannot be created" in line for line in lines)


def test_an_invalid_output_template_is_an_error(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, emu.base_url, inbox={"output_template": "{nope}.{ext}"})
    code, lines = check(path, capsys)
    assert code == 2
    assert any("output_template" in line for line in lines_of(lines, "error"))


def test_a_notification_url_apprise_cannot_use_is_an_error_that_hides_it(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "nosuchscheme://user:s3cret-pass@example.invalid/x"
    extra = f'\n[notify]\nurls = ["json://127.0.0.1:9/ok", "{secret}"]\n'
    path = write_config(tmp_path, emu.base_url, extra=extra)
    code, lines = check(path, capsys)
    assert code == 2
    (line,) = [x for x in lines_of(lines, "error") if "[notify] urls" in x]
    assert "#2" in line and "s3cret" not in "\n".join(lines)


def _other_filesystem(tmp_path: Path) -> Path | None:
    for candidate in (Path("/dev/shm"), Path("/run/user") / str(os.getuid()), Path("/tmp")):
        try:
            if candidate.is_dir() and os.access(candidate, os.W_OK):
                if candidate.stat().st_dev != tmp_path.stat().st_dev:
                    return candidate
        except OSError:
            continue
    return None


def test_an_archive_folder_on_another_filesystem_is_a_warning(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no writable folder on another filesystem here")
    archive = other / f"mvsep-check-{os.getpid()}-{tmp_path.name}"
    path = write_config(tmp_path, emu.base_url, inbox={"archive_dir": str(archive)})
    code, lines = check(path, capsys)
    assert code == 1
    warnings = lines_of(lines, "warning")
    assert len(warnings) == 1 and "archive_dir" in warnings[0]
    assert "not on the inbox's filesystem" in warnings[0]
    assert not archive.exists()  # checking creates nothing


def test_an_unreadable_config_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[mvsep\n")
    code, lines = check(path, capsys)
    assert code == 2
    assert lines[0].startswith(f"error: {path}: not valid TOML")


def test_a_lost_journal_marker_is_an_error_as_run_refuses_to_start(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, emu.base_url)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "journal.sqlite.gone").write_text("replaced while running\n")
    code, lines = check(path, capsys)
    assert code == 2
    [error] = lines_of(lines, "error")
    assert "[journal] path" in error and "replaced while running" in error


def test_global_options_work_after_the_subcommand(
    tmp_path: Path, emu: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, emu.base_url)
    assert main(["check-config", "--config", str(path), "-v"]) == 0
    assert capsys.readouterr().out.strip().endswith(": OK")
