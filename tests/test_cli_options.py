"""``mvsep-watch separate`` option flags: ``--opt1``..``--opt4`` as the README shows them, and
``--opt N KEY`` (repeatable) for add_opt1..add_opt10."""

from __future__ import annotations

import argparse

import pytest

from daemon.cli import parse_args
from daemon.config import OPTION_NUMBERS, Settings
from daemon.separate import requested_preset

BASE = ["separate", "song.wav", "--sep-type", "121"]


def options_of(argv: list[str]) -> dict[int, str | None]:
    args = parse_args(BASE + argv)
    return {n: getattr(args, f"opt{n}") for n in OPTION_NUMBERS}


def test_readme_spelling_still_works_word_for_word() -> None:
    got = options_of(["--opt1", "K", "--opt4", "Extract vocals first"])
    assert got[1] == "K" and got[4] == "Extract vocals first"
    assert {n for n, v in got.items() if v is not None} == {1, 4}


def test_opt_n_key_is_repeatable_up_to_ten() -> None:
    got = options_of(["--opt", "5", "x", "--opt", "10", "free text", "--opt2", "8"])
    assert (got[2], got[5], got[10]) == ("8", "x", "free text")
    assert {n for n, v in got.items() if v is not None} == {2, 5, 10}


def test_every_n_from_one_to_ten() -> None:
    argv = [word for n in OPTION_NUMBERS for word in ("--opt", str(n), f"v{n}")]
    assert options_of(argv) == {n: f"v{n}" for n in OPTION_NUMBERS}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--opt", "11", "x"], "--opt 11 x: N must be a number 1..10"),
        (["--opt", "0", "x"], "--opt 0 x: N must be a number 1..10"),
        (["--opt", "two", "x"], "--opt two x: N must be a number 1..10"),
        (["--opt", "3", "a", "--opt", "3", "b"], "--opt 3 b: add_opt3 is given twice"),
        (["--opt1", "a", "--opt", "1", "b"], "--opt 1 b: add_opt1 is given twice"),
    ],
)
def test_bad_opt_is_a_usage_error_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(BASE + argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_opt_n_reaches_the_command_line_preset() -> None:
    args = parse_args(BASE + ["--opt", "3", "1", "--opt1", "Hello"])
    name, preset = requested_preset(args, Settings())
    assert name == "command-line" and preset.sep_type == 121
    assert preset.options() == {"add_opt1": "Hello", "add_opt3": "1"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.toml", "-v", "--log-format", "json", "status"],
        ["status", "--config", "x.toml", "-v", "--log-format", "json"],
        ["--config", "x.toml", "status", "-v", "--log-format", "json"],
    ],
)
def test_global_options_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.config, args.verbose, args.log_format) == ("x.toml", True, "json")


def test_global_options_default_when_not_given_anywhere() -> None:
    args = parse_args(["status"])
    assert (args.config, args.verbose, args.log_format) == (None, False, None)


def test_no_command_help_shows_raw_markup() -> None:
    from daemon.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    seen = 0
    for name, child in sub.choices.items():
        text = child.format_help()
        assert "``" not in text and ":class:`" not in text, (name, text)
        seen += 1
    assert seen >= 10  # run, demo, separate, init, check-config, status, jobs, ... service


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["status"], "status"),
        (["--config", "status", "jobs", "list"], "jobs"),
        (["-v", "--log-format", "json", "check-config"], "check-config"),
        (["--help"], None),
    ],
)
def test_the_command_is_found_past_the_global_options(argv: list[str], command: str | None) -> None:
    from daemon.cli import command_in

    assert command_in(argv) == command


def test_status_does_not_import_the_client_or_the_catalogue() -> None:
    """Only the command run is imported in full: `status` stays light (issue 12, item 3)."""
    import subprocess
    import sys

    code = (
        "import sys; from daemon.cli import parse_args; parse_args(['status']); "
        "print(sorted(m for m in ('httpx', 'daemon.catalogue', 'daemon.mvsep.client') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
