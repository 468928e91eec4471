"""Config loading: every kind of problem names the file, the key and what was expected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import describe_location, load_settings
from daemon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TOKEN_ENV = {"MVSEP_API_TOKEN": "tok-from-env-1234"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
[mvsep]
base_url = "http://127.0.0.1:1"
[presets.v]
sep_type = 40
[[inbox]]
path = "in"
preset = "v"
output = "out"
"""


def problems(path: Path, env: dict[str, str] | None = None, **kw: bool) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=TOKEN_ENV if env is None else env, **kw)
    return info.value.problems


def test_example_config_loads() -> None:
    settings, _ = load_settings(ROOT / "config.example.toml", env=TOKEN_ENV, require_inboxes=True)
    assert settings.presets["four-stems"].format.name == "flac16"
    assert settings.inbox[0].path == ROOT / "inbox" / "music"
    assert settings.inbox[1].poll is True
    assert settings.token() == "tok-from-env-1234"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    settings, _ = load_settings(write(tmp_path, GOOD), env=TOKEN_ENV)
    assert settings.inbox[0].path == tmp_path / "in"
    assert settings.inbox[0].failed_path == tmp_path / "in" / "_failed"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[mvsep]\nconnect_timeout_s = -1\n", "[mvsep] connect_timeout_s: Input should be greater"),
        ("[mvsep]\nbase_url = 'ftp://x'\n", "[mvsep] base_url: expected an http:// or https://"),
        ("[mvsep]\nbogus = 1\n", "[mvsep] bogus: unknown key"),
        ("[presets.x]\noutput_format = 'mp3'\n", "[presets.x] sep_type: required key is missing"),
        ("[presets.x]\nsep_type = 1\noutput_format = 'flac99'\n", "unknown output format 'flac99'"),
        ("[[inbox]]\npath = 'a'\noutput = 'b'\n", "[[inbox]] #1 preset: required key is missing"),
        ("[engine]\nmax_transfers = 'many'\n", "[engine] max_transfers: Input should be a valid"),
        ("[logging]\nlevel = 'loud'\n", "[logging] level: Input should be 'debug'"),
        ("[presets.x]\nsep_type = 121\nadd_opt11 = '1'\n", "[presets.x] add_opt11: unknown key"),
        ("[presets.x]\nsep_type = 1\nadd_opt7 = [1]\n", "[presets.x] add_opt7 str: Input should"),
    ],
)
def test_each_field_error_names_file_and_key(tmp_path: Path, snippet: str, expected: str) -> None:
    path = write(tmp_path, snippet)
    lines = problems(path)
    assert any(line.startswith(f"{path}: ") and expected in line for line in lines), lines


def test_presets_take_add_opt1_to_add_opt10(tmp_path: Path) -> None:
    opts = "".join(f"add_opt{n} = {n * 10 if n % 2 else repr(str(n))}\n" for n in range(1, 11))
    path = write(tmp_path, GOOD.replace("[presets.v]\nsep_type = 40\n", "") +
                 f"[presets.all]\nsep_type = 121\n{opts}[presets.some]\nsep_type = 121\n"
                 "add_opt5 = 'x'\nadd_opt10 = 0\n[presets.v]\nsep_type = 40\n")  # fmt: skip
    settings, _ = load_settings(path, env=TOKEN_ENV)
    assert settings.presets["all"].options() == {
        f"add_opt{n}": str(n * 10) if n % 2 else str(n) for n in range(1, 11)
    }
    assert settings.presets["some"].options() == {"add_opt5": "x", "add_opt10": "0"}
    assert settings.presets["v"].options() == {}


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[mvsep]\nbogus = 1\nread_timeout_s = 0\n[engine]\nbackoff_cap_s = -2\n")
    assert len(problems(path)) == 3


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    lines = problems(write(tmp_path, "[mvsep\nbase_url = 1\n"))
    assert "not valid TOML" in lines[0] and "line 1" in lines[0]


def test_missing_file(tmp_path: Path) -> None:
    lines = problems(tmp_path / "nope.toml")
    assert "config file not found" in lines[0] and "nope.toml" in lines[0]


def test_unknown_preset_and_output_inside_inbox(tmp_path: Path) -> None:
    text = GOOD.replace('preset = "v"', 'preset = "vv"').replace(
        'output = "out"', 'output = "in/o"'
    )
    lines = problems(write(tmp_path, text))
    assert any("[[inbox]] #1 preset: no preset 'vv' (known: v)" in line for line in lines)
    assert any("[[inbox]] #1 output:" in line and "is inside inbox #1" in line for line in lines)


def test_nested_inboxes_and_duplicate_names(tmp_path: Path) -> None:
    text = GOOD + '[[inbox]]\npath = "in/sub"\npreset = "v"\noutput = "out2"\nname = "in"\n'
    lines = problems(write(tmp_path, text))
    assert any("[[inbox]] #2 path:" in line and "must not nest" in line for line in lines)
    assert any("'in' is used twice" in line for line in lines)


def test_token_required_names_all_three_sources(tmp_path: Path) -> None:
    lines = problems(write(tmp_path, GOOD), env={})
    assert "MVSEP_API_TOKEN" in lines[0] and "api_token_file" in lines[0]


def test_token_sources_in_order(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file-5678\n")
    token_file.chmod(0o600)
    text = GOOD.replace(
        "[mvsep]", f"[mvsep]\napi_token = 'tok-inline-9'\napi_token_file = '{token_file}'"
    )
    path = write(tmp_path, text)
    assert load_settings(path, env=TOKEN_ENV)[0].token() == "tok-from-env-1234"
    assert load_settings(path, env={})[0].token() == "tok-from-file-5678"
    assert (
        load_settings(
            write(tmp_path, GOOD.replace("[mvsep]", "[mvsep]\napi_token = 'tok-inline-9'")), env={}
        )[0].token()
        == "tok-inline-9"
    )


def test_unreadable_token_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("[mvsep]", "[mvsep]\napi_token_file = 'missing-token'"))
    lines = problems(path, env={})
    assert "[mvsep] api_token_file: cannot read" in lines[0] and "missing-token" in lines[0]


def test_env_overrides_file_and_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    env = {**TOKEN_ENV, "MVSEP_WATCH_MVSEP__BASE_URL": "http://127.0.0.1:9999"}
    assert load_settings(path, env=env)[0].mvsep.base_url == "http://127.0.0.1:9999"
    lines = problems(path, env={**TOKEN_ENV, "MVSEP_WATCH_ENGINE__MAX_TRANSFERS": "x"})
    assert "(from $MVSEP_WATCH_ENGINE__MAX_TRANSFERS)" in lines[0]


def test_token_never_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "[mvsep]\napi_token = ['tok-secret-list']\n")
    assert all("tok-secret-list" not in line for line in problems(path, env={}))


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (("inbox", 1, "path"), "[[inbox]] #2 path"),
        (("presets", "k", "sep_type"), "[presets.k] sep_type"),
        (("mvsep", "base_url"), "[mvsep] base_url"),
        (("mvsep",), "mvsep"),
    ],
)
def test_describe_location(loc: tuple[object, ...], text: str) -> None:
    assert describe_location(loc) == text


def test_cli_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    """A real subprocess: every problem of the file at once, one line each, on stdout."""
    path = write(
        tmp_path, "[mvsep]\nbogus = 1\nread_timeout_s = 0\nbase_url = 'http://127.0.0.1:1'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(path), "check-config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MVSEP_")},
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error: ")]
    assert {e.split(": ")[2] for e in errors[:4]} == {
        "[mvsep] bogus",
        "[mvsep] read_timeout_s",
        "[mvsep] api_token",
        "[[inbox]]",
    }
    assert all(e.startswith(f"error: {path}: ") for e in errors)


def test_every_unknown_key_and_the_cross_checks_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("[presets.v]", "[presets.v]\nadd_opt1 = 3\nopt2 = 1") + (
        "\n[engine]\nmax_transfer = 2\n[engin]\nx = 1\n[[inbox]]\npath = 'in/sub'\n"
        "preset = 'nope'\noutput = 'out2'\n"
    )
    found = problems(write(tmp_path, text), env={})
    joined = "\n".join(found)
    assert "[presets.v] opt2: unknown key" in joined
    assert "[engine] max_transfer: unknown key — did you mean max_transfers?" in joined
    assert "engin: unknown key — did you mean [engine]?" in joined
    assert "[mvsep] api_token: no API token" in joined  # not hidden by the typos
    assert "[[inbox]] #2 preset: no preset 'nope'" in joined
    assert "[[inbox]] #2 path" in joined and "inboxes must not nest" in joined


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[engin]\nmax_transfers = 2\n", "engin: unknown key — did you mean [engine]?"),
        ("[mvsep]\nbase_ur = 'x'\n", "[mvsep] base_ur: unknown key — did you mean base_url?"),
        ("[mvsep]\nmax_transfers = 2\n", "max_transfers: unknown key — it belongs in [engine]"),
        ("[presets.v]\nsep_type = 1\nadd_opt12 = 1\n", "the options are add_opt1..add_opt10"),
        ("[mvsep]\nzzz = 1\n", "[mvsep] zzz: unknown key (misspelt, or in the wrong section?)"),
    ],
)
def test_an_unknown_key_says_what_it_probably_meant(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    assert any(expected in line for line in problems(write(tmp_path, snippet)))


def test_config_file_holding_the_token_readable_by_others_is_warned_about(
    tmp_path: Path,
) -> None:
    from structlog.testing import capture_logs

    path = write(tmp_path, GOOD.replace("[mvsep]", '[mvsep]\napi_token = "tok-in-file-5678"'))
    path.chmod(0o644)
    with capture_logs() as logs:
        load_settings(path, env={})
    warned = [e for e in logs if "readable by other users" in str(e["event"])]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["config_file"] == str(path)
    assert "tok-in-file-5678" not in repr(logs)
    path.chmod(0o600)
    with capture_logs() as logs:
        load_settings(path, env={})
    assert not [e for e in logs if "readable by other users" in str(e["event"])]


def test_readable_config_without_a_token_is_not_warned_about(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    path = write(tmp_path, GOOD)
    path.chmod(0o644)
    with capture_logs() as logs:
        load_settings(path, env=TOKEN_ENV)
    assert not [e for e in logs if "readable" in str(e["event"])]


@pytest.mark.parametrize(("value", "expected"), [("", "auto"), ("poll = true", True),
                         ("poll = false", False), ('poll = "auto"', "auto")])  # fmt: skip
def test_inbox_poll_is_auto_true_or_false(tmp_path: Path, value: str, expected: object) -> None:
    settings, _ = load_settings(write(tmp_path, GOOD + value + "\n"), env=TOKEN_ENV)
    assert settings.inbox[0].poll == expected
    assert settings.inbox[0].follow_symlinks is False


def test_inbox_poll_rejects_other_words(tmp_path: Path) -> None:
    found = problems(write(tmp_path, GOOD + 'poll = "sometimes"\n'))
    assert len(found) == 1 and "[[inbox]] #1 poll" in found[0]


def test_the_example_keeps_the_journal_and_cache_in_the_state_folder_as_it_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    settings, _ = load_settings(ROOT / "config.example.toml", env=TOKEN_ENV)
    state = tmp_path / ".local" / "state" / "mvsep-watch"
    assert settings.journal.path == state / "journal.sqlite"
    assert settings.catalogue.cache_path == state / "algorithms.json"
    text = (ROOT / "config.example.toml").read_text()
    assert "~/.local/state/mvsep-watch/journal.sqlite" in text
    assert "~/.local/state/mvsep-watch/algorithms.json" in text
