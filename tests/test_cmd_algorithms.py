"""``mvsep-watch algorithms`` and ``mvsep-watch account``: tables and JSON, against the
emulator on loopback; offline, the catalogue comes from the cache and says so."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from daemon.cli import main

TOKEN = "cmd-token-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key == "MVSEP_API_TOKEN" or key.startswith("MVSEP_WATCH_"):
            monkeypatch.delenv(key)


def write_config(tmp: Path, base_url: str, **mvsep: Any) -> Path:
    config = {
        "mvsep": {"base_url": base_url, "api_token": TOKEN, **mvsep},
        "journal": {"path": str(tmp / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(tmp / "state" / "algorithms.json")},
    }
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(config))
    path.chmod(0o600)
    return path


def run(path: Path, *argv: str) -> int:
    return main(["--config", str(path), *argv])


def test_algorithms_table_lists_id_name_stems_price_premium_and_options(
    tmp_path: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(write_config(tmp_path, emulator.base_url), "algorithms", "bs", "roformer") == 0
    out = capsys.readouterr().out
    assert out.startswith("From the live MVSEP catalogue (58 types).")
    row = next(line for line in out.splitlines() if line.strip().startswith("40 "))
    assert "BS Roformer (vocals, instrumental)" in row and "Vocals, Instrumental" in row
    assert "add_opt1 'Vocal model type'" in out
    assert "81 = 'ver. 2025.07' (default)" in out
    assert "MelBand" not in out  # every word of the search must be in the name
    assert (tmp_path / "state" / "algorithms.json").is_file()  # the cache was refreshed


def test_algorithms_json_carries_every_field(
    tmp_path: Path, make_emulator: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator()
    assert run(write_config(tmp_path, emu.base_url), "algorithms", "--json", "26") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "live" and doc["error"] is None
    [algo] = doc["algorithms"]
    assert algo["render_id"] == 26 and algo["premium_only"] is True
    assert algo["price_coefficient"] == 2 and algo["stems"] == ["Vocals", "Instrumental"]
    field = algo["options"][1]
    assert field["key"] == "add_opt2" and field["label"] == "Model Type"
    assert field["default"] == "7" and field["choices"]["9"] == "High Instrumental Fullness"


def test_algorithms_offline_uses_the_cache_and_says_so(
    tmp_path: Path, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(write_config(tmp_path, emulator.base_url), "algorithms", "--json") == 0
    capsys.readouterr()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = write_config(tmp_path, dead)
    assert run(path, "algorithms", "karaoke") == 0
    out = capsys.readouterr().out
    assert out.startswith("From the cached catalogue of ")
    assert "Offline:" in out and "MVSep Karaoke (lead/back vocals)" in out
    assert run(path, "algorithms", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "cache" and doc["fetched_at"].endswith("Z") and doc["error"]


def test_algorithms_offline_without_a_cache_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(write_config(tmp_path, "http://127.0.0.1:1"), "algorithms") == 1
    assert "no cached copy" in capsys.readouterr().err


def test_account_table_and_json(
    tmp_path: Path, make_emulator: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(premium=True)
    path = write_config(tmp_path, emu.base_url)
    assert run(path, "account") == 0
    out = capsys.readouterr().out
    assert "premium         on" in out
    assert "parallel limit  10 (from the plan" in out
    assert TOKEN not in out
    assert run(path, "account", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["premium"] is True and doc["parallel_limit"] == 10
    assert doc["running_jobs"] == 0 and doc["queue"]["per_plan"] == {"free": 0, "premium": 0}
    assert TOKEN not in json.dumps(doc)


@pytest.mark.parametrize(("premium", "cap", "limit"), [(True, 3, 3), (False, None, 1)])
def test_account_parallel_limit_follows_the_engine_rule(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    premium: bool,
    cap: int | None,
    limit: int,
) -> None:
    emu = make_emulator(premium=premium)
    extra = {} if cap is None else {"max_parallel_jobs": cap}
    assert run(write_config(tmp_path, emu.base_url, **extra), "account", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parallel_limit"] == limit
    assert doc["parallel_limit_from"] == ("plan" if cap is None else "max_parallel_jobs")


def test_account_with_a_refused_token_exits_2_without_showing_it(
    tmp_path: Path, make_emulator: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(tokens=("another-token-1234",))
    assert run(write_config(tmp_path, emu.base_url), "account") == 2
    captured = capsys.readouterr()
    assert "refused the API token" in captured.err
    assert TOKEN not in captured.out + captured.err
