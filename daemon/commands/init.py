"""``mvsep-watch init [PATH]``: write a first, commented config.

From flags (``--token-file``, ``--inbox``, ``--output``, ``--preset`` or ``--sep-type``,
``--yes`` for the defaults of the rest), or, on a terminal, from short prompts: the token
file (the token typed in hidden, saved chmod 600), one inbox, its output folder and a preset
chosen from the catalogue (the live one, else the cached or the built-in copy, saying
which). PATH defaults to the config every other command reads. An existing file is never
replaced without ``--force``. The token itself is written into the config only when given
explicitly (``--token``); the file is then chmod 600.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from daemon.catalogue import Catalogue, SourcedCatalogue, live_or_cached
from daemon.commands import EXIT_CONFIG, EXIT_OK, SubParsers, help_text
from daemon.commands.init_text import STARTER_PRESETS, InitAnswers, render_config
from daemon.config import default_config_path, resolve_config_path
from daemon.errors import ConfigError
from daemon.mvsep.models import Algorithm

Ask = Callable[[str, str], str]
"""``ask(question, default) -> answer`` (the default when the answer is empty)."""

DEFAULT_BASE_URL = "https://mvsep.com"


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "init",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", nargs="?", type=Path, help="where (default: the config path)")
    parser.add_argument("--token-file", type=Path, help="a file holding the API token")
    parser.add_argument(
        "--token", help="write this token into the config itself (prefer --token-file)"
    )
    parser.add_argument("--inbox", type=Path, help="the folder to watch")
    parser.add_argument("--output", type=Path, help="where the stems go")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--preset", choices=sorted(STARTER_PRESETS), help="a starter preset")
    which.add_argument("--sep-type", help="an algorithm: number or name (see `algorithms`)")
    parser.add_argument("--format", dest="output_format", default=None, help="e.g. flac16")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="the MVSEP host")
    parser.add_argument(
        "--yes", "-y", action="store_true", help="no prompts: defaults for the rest"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from daemon.logs import configure_logging

    configure_logging(fmt=args.log_format or "auto", level="info")
    target = (args.path or resolve_config_path(args.config, os.environ)).expanduser()
    target = Path(os.path.abspath(target))
    if target.exists() and not args.force:
        print(f"error: {target} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_CONFIG
    interactive = sys.stdin.isatty() and not args.yes
    try:
        answers = gather(args, ask=prompt if interactive else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    write_config(target, answers)
    for folder in (answers.inbox, answers.output):
        folder.mkdir(parents=True, exist_ok=True)
    _say_done(target, answers)
    return EXIT_OK


def prompt(question: str, default: str) -> str:
    shown = f" [{default}]" if default else ""
    answer = input(f"{question}{shown}: ").strip()
    return answer or default


def gather(args: argparse.Namespace, *, ask: Ask | None) -> InitAnswers:
    """The answers: flags first, then prompts (``ask``), else the defaults."""
    home = Path.home()
    token_file = _token_file(args, ask)
    inbox = _folder(args.inbox, "Inbox folder to watch", home / "mvsep" / "inbox", ask)
    output = _folder(args.output, "Folder for the stems", home / "mvsep" / "stems", ask)
    name, preset, source = choose_preset(args, ask)
    print(f"preset {name!r}: {preset['sep_type']!r}, checked against {source}", file=sys.stderr)
    return InitAnswers(
        base_url=args.base_url.rstrip("/"),
        token_file=token_file,
        token=args.token,
        inbox=inbox,
        output=output,
        preset_name=name,
        preset=preset,
    )


def _folder(given: Path | None, question: str, default: Path, ask: Ask | None) -> Path:
    raw = str(given) if given is not None else (ask(question, str(default)) if ask else "")
    return Path(os.path.abspath(Path(raw or default).expanduser()))


def _token_file(args: argparse.Namespace, ask: Ask | None) -> Path | None:
    """The token file: given or asked for; on a terminal, a file that does not exist yet
    is filled with the token typed in hidden (chmod 600). None when the token comes from
    ``--token`` or the environment."""
    if args.token is not None:
        if args.token_file is not None:
            raise ValueError("give --token or --token-file, not both")
        return None
    if args.token_file is not None:
        path = Path(os.path.abspath(args.token_file.expanduser()))
    elif ask is not None:
        default = default_config_path().parent / "token"
        path = Path(os.path.abspath(Path(ask("Token file", str(default))).expanduser()))
    else:
        return None  # $MVSEP_API_TOKEN, as the written comment says
    if ask is None or path.is_file():
        return path
    token = getpass.getpass("API token (mvsep.com → profile → API; hidden, Enter to skip): ")
    if token.strip():
        save_token(path, token.strip())
    return path


def save_token(path: Path, token: str) -> None:
    """The token in its own file, readable by this user only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    path.chmod(0o600)


def choose_preset(args: argparse.Namespace, ask: Ask | None) -> tuple[str, dict[str, Any], str]:
    """(name, preset table, where the catalogue came from): a starter preset or an
    algorithm, checked against the catalogue. Raises ValueError naming the closest ones."""
    sourced = _catalogue(args.base_url)
    catalogue = sourced.catalogue
    choice = args.sep_type or args.preset
    if choice is None and ask is not None:
        _list_presets(catalogue)
        choice = ask("Preset (a name above, or an algorithm number or name)", "vocals")
    choice = choice or "vocals"
    if choice in STARTER_PRESETS:
        name, preset = choice, dict(STARTER_PRESETS[choice])
    else:
        algo = _algorithm(catalogue, choice)
        name, preset = _slug(algo.name), {"sep_type": algo.render_id, "output_format": "flac16"}
    if args.output_format:
        preset["output_format"] = args.output_format
    try:
        catalogue.resolve(
            sep_type=preset["sep_type"],
            options={},
            output_format=preset["output_format"],
            where=f"preset {name!r}",
        )
    except ConfigError as exc:
        raise ValueError("; ".join(exc.problems)) from None
    return name, preset, sourced.describe()


def _catalogue(base_url: str) -> SourcedCatalogue:
    """The live catalogue of ``base_url``, else the cached copy, else the built-in one."""
    from daemon.commands.quick import catalogue_cache, default_settings, quick_client

    settings = default_settings()
    mvsep = settings.mvsep.model_copy(update={"base_url": base_url.rstrip("/")})
    settings = settings.model_copy(update={"mvsep": mvsep})
    with quick_client(settings) as client:
        return live_or_cached(catalogue_cache(settings, client), builtin=True)


def _algorithm(catalogue: Catalogue, choice: str) -> Algorithm:
    text = choice.strip()
    if text.isdigit():
        found = catalogue.get(int(text))
        if found is None:
            raise ValueError(f"--sep-type {text}: no separation type {text} in the catalogue")
        return found
    matches = catalogue.find(text)
    if len(matches) == 1:
        return matches[0]
    close = matches or catalogue.closest(text)
    names = ", ".join(f"{a.render_id} {a.name!r}" for a in close[:5]) or "none"
    raise ValueError(f"--sep-type {text!r}: not one algorithm; closest: {names}")


def _slug(name: str) -> str:
    words = re.findall(r"[a-z0-9]+", name.split("(")[0].casefold())
    return "-".join(words) or "preset"


def _list_presets(catalogue: Catalogue) -> None:
    print("Presets to start with:", file=sys.stderr)
    for name, preset in STARTER_PRESETS.items():
        print(f"  {name:<11} {preset['sep_type']}", file=sys.stderr)
    print(f"  (or any of {len(catalogue)} algorithms: mvsep-watch algorithms)", file=sys.stderr)


def write_config(target: Path, answers: InitAnswers) -> None:
    """Write atomically; a config holding the token is made chmod 600 before it is in place."""
    from daemon.filing import write_atomically

    text = render_config(answers).encode("utf-8")

    def fill(fh: BinaryIO) -> None:
        fh.write(text)
        if answers.token is not None:
            os.fchmod(fh.fileno(), 0o600)

    write_atomically(target, fill)


def _say_done(target: Path, answers: InitAnswers) -> None:
    print(f"wrote {target}")
    print(f"created {answers.inbox} and {answers.output} (if missing)")
    if answers.token_file is None and answers.token is None:
        print("the token: set $MVSEP_API_TOKEN (or add api_token_file to the config)")
    elif answers.token_file is not None and not answers.token_file.is_file():
        print(
            f"the token file {answers.token_file} does not exist yet: put your token in it, "
            f"readable by you only: (umask 077; printf '%s\\n' 'YOUR-TOKEN' > "
            f"'{answers.token_file}')"
        )
    read_by_default = resolve_config_path(None, os.environ).expanduser().absolute()
    config = "" if target == read_by_default else f" --config '{target}'"
    print(f"next: mvsep-watch{config} check-config, then mvsep-watch{config} run")
