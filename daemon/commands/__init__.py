"""One module per subcommand family; ``daemon/cli.py`` registers them and runs the chosen one.

A command module has ``register(sub)``, which adds its parser(s) and sets
``handler=<callable(args) -> int>`` with ``parser.set_defaults``. Handlers load the config
through :func:`load_config` (logs set up, token redacted), and return an exit code
(``EXIT_OK``, ``EXIT_WARN``, ``EXIT_FAIL``, ``EXIT_CONFIG``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from daemon.logs import configure_logging

if TYPE_CHECKING:
    from daemon.config import Settings

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WARN = 1  # check-config: warnings only

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config``, ``--log-format`` and ``-v``: before or after the subcommand.

    On a subcommand they default to SUPPRESS, so one given before it is not overwritten."""
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config", metavar="PATH", default=default, help="config file (default: see README)"
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default=default,
        help="override [logging] format",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else default,
        help="debug logging",
    )


def help_text(doc: str | None) -> str:
    """A module docstring as ``--help`` shows it: plain text, no reST markup."""
    text = re.sub(r"``([^`]+)``", r"\1", doc or "")
    return re.sub(r":(?:class|func|mod|meth|data):`~?([^`]+)`", r"\1", text).strip()


def setup_logs(args: argparse.Namespace, settings: object | None) -> None:
    """The log format and level for a command: flags over the config's ``[logging]``."""
    from daemon.config import Settings

    fmt = args.log_format or (settings.logging.format if isinstance(settings, Settings) else "auto")
    level = "debug" if args.verbose else "info"
    if isinstance(settings, Settings) and not args.verbose:
        level = settings.logging.level
    secrets = [settings.token()] if isinstance(settings, Settings) else []
    configure_logging(fmt=fmt, level=level, secrets=secrets)


def load_config(
    args: argparse.Namespace, *, require_token: bool = False, require_inboxes: bool = False
) -> tuple[Settings, Path]:
    """Load the config named by ``--config`` (or the default), then set up logs from it.

    The config's own warnings (a token readable by others) go to stderr, never to a
    command's stdout (``status --json``); the config's logging settings apply right after.
    Returns ``(Settings, path)``; a broken config raises ``ConfigError`` (exit 2).
    """
    from daemon.config import load_settings

    configure_logging(fmt=args.log_format or "auto", level="info")
    settings, path = load_settings(
        args.config, require_token=require_token, require_inboxes=require_inboxes
    )
    setup_logs(args, settings)
    return settings, path
