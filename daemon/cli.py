"""Command line: parses arguments, loads config, sets up logs, calls the service. No logic.

Exit codes: 0 success, 1 runtime failure, 2 bad config or usage, or the journal was lost
(a person must look), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon import __version__
from daemon.commands import (
    EXIT_CONFIG,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    add_global_options,
    load_config,
    setup_logs,
)
from daemon.errors import ConfigError, JournalError, MvsepWatchError
from daemon.logs import configure_logging

# the commands of daemon/commands/ (each module has register(sub)); only the one run is
# imported, so a light command does not pay for the imports of a heavy one
COMMANDS: dict[str, tuple[str, str]] = {
    "init": (
        "daemon.commands.init",
        "write a first, commented config (flags, or prompts on a terminal)",
    ),
    "check-config": (
        "daemon.commands.check",
        "check the config, token, base URL, presets and folders; every problem at once",
    ),
    "status": (
        "daemon.commands.status",
        "inboxes (watch mode, paused, jobs per state), recent jobs (progress, credits)",
    ),
    "jobs": (
        "daemon.commands.jobs",
        "list, show, retry, cancel or forget jobs",
    ),
    "algorithms": (
        "daemon.commands.algorithms",
        "list MVSEP's separation types and their options (cached when offline)",
    ),
    "account": (
        "daemon.commands.account",
        "the MVSEP account: premium, credits, the parallel limit used, queues",
    ),
    "service": (
        "daemon.commands.service",
        "install, remove or show the systemd/launchd service",
    ),
}
_VALUE_OPTIONS = frozenset({"--config", "--log-format"})


def command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (the first word that is no option or option value)."""
    after_option = False
    for word in argv:
        if after_option:
            after_option = False
        elif word in _VALUE_OPTIONS:
            after_option = True
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the command it names is built in full (the others
    are names and help lines), else every command is."""
    chosen = None if argv is None else command_in(argv)
    parser = argparse.ArgumentParser(
        prog="mvsep-watch",
        description="Watch folders and separate dropped audio with the MVSEP API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the daemon in the foreground (systemd/launchd start this)")
    _add_demo(sub)
    _add_separate(sub)
    for name, (module, text) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=text, add_help=False)
    sub.add_parser(
        "emulator", help="run the local MVSEP emulator (see docs/emulator.md)", add_help=False
    )
    for child in sub.choices.values():
        if child.prog.rsplit(" ", 1)[-1] != "emulator":
            add_global_options(child, top=False)
    return parser


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="start the embedded emulator and a daemon on demo folders, drop a file in"
    )
    demo.add_argument("inbox", nargs="?", type=Path, help="inbox folder (default: temporary)")
    demo.add_argument("output", nargs="?", type=Path, help="output folder (default: temporary)")
    demo.add_argument("--seconds", type=float, default=20.0, help="length of the generated song")
    demo.add_argument("--once", action="store_true", help="exit after the first song is filed")
    demo.add_argument("--processing", type=float, default=3.0, help="emulated processing time")


def _add_separate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sep = sub.add_parser("separate", help="separate files once and download their stems")
    sep.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sep.add_argument("--preset", help="a [presets.NAME] from the config")
    sep.add_argument("--sep-type", help="separation type: number or algorithm name")
    for n in (1, 2, 3, 4):  # the short spelling the README shows (--opt1 K)
        sep.add_argument(f"--opt{n}", metavar="KEY", help=f"add_opt{n}: option key or label")
    sep.add_argument(
        "--opt",
        nargs=2,
        action="append",
        default=[],
        dest="opt_pairs",
        metavar=("N", "KEY"),
        help="add_optN (N = 1..10; repeatable): option key or label",
    )
    sep.add_argument("--format", dest="output_format", help="output format, e.g. flac24, wav16")
    sep.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    sep.add_argument("--base-url", help="MVSEP base URL (overrides [mvsep] base_url)")
    sep.add_argument("--journal", type=Path, help="journal file (default: the separate journal)")
    sep.add_argument(
        "--no-config", action="store_true", help="do not read a config file (token from env)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        return _emulator(args_list[1:])
    args = parse_args(args_list)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except MvsepWatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        from daemon.leaving import leave_without_busy_workers  # only an engine leaves any

        leave_without_busy_workers(code=EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mvsep-watch status | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; for ``separate``, every ``--opt N KEY`` becomes ``args.optN`` (1..10,
    beside ``--opt1``..``--opt4``). A bad or repeated ``N`` is a usage error (exit 2)."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command == "separate":
        try:
            _fold_options(args)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def _fold_options(args: argparse.Namespace) -> None:
    from daemon.config import OPTION_NUMBERS

    for n in OPTION_NUMBERS:
        if not hasattr(args, f"opt{n}"):
            setattr(args, f"opt{n}", None)
    for raw, key in args.opt_pairs:
        number = int(raw) if raw.strip().isdigit() else 0
        if number not in OPTION_NUMBERS:
            first, last = OPTION_NUMBERS[0], OPTION_NUMBERS[-1]
            raise ValueError(f"--opt {raw} {key}: N must be a number {first}..{last}")
        if getattr(args, f"opt{number}") is not None:
            raise ValueError(f"--opt {raw} {key}: add_opt{number} is given twice")
        setattr(args, f"opt{number}", key)


def _dispatch(args: argparse.Namespace) -> int:
    handler = getattr(args, "handler", None)
    if handler is not None:  # a command from COMMAND_MODULES
        code: int = handler(args)
        return code
    if args.command == "demo":
        from daemon.demo import run_demo

        setup_logs(args, None)
        return run_demo(args)
    if args.command == "separate":
        from daemon.separate import run_separate

        return run_separate(args, configure=lambda s: setup_logs(args, s))
    settings, path = load_config(
        args, require_token=args.command == "run", require_inboxes=args.command == "run"
    )
    from daemon.runner import run_service

    return run_service(settings, config_path=path)


def _emulator(argv: list[str]) -> int:
    try:
        from daemon.emulator.cli import main as emulator_main
    except ImportError as exc:  # the [emulator] extra is not installed
        print(
            f"error: the emulator needs the [emulator] extra: pip install 'mvsep-watch[emulator]' "
            f"({exc})",
            file=sys.stderr,
        )
        return EXIT_FAIL
    configure_logging(fmt="auto", level="info")
    return emulator_main(argv)
