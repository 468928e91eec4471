"""``mvsep-watch service install | uninstall | status`` (and ``run-agent`` for launchd).

``install`` renders the systemd unit (or, on macOS, the launchd agent) from this install's
real paths, writes it where the service manager looks, and prints the one next command;
``--dry-run`` prints the file and writes nothing. It never runs systemctl or launchctl
itself: what to run is printed.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from daemon.commands import EXIT_CONFIG, EXIT_OK, EXIT_WARN, SubParsers, load_config
from daemon.config import ENV_TOKEN, Settings
from daemon.errors import ConfigError
from daemon.filing import write_atomically
from daemon.service_files import (
    Target,
    default_manager,
    folders_to_create,
    install_paths,
    render,
    service_user,
    target,
)


def register(sub: SubParsers) -> None:
    from daemon.commands import add_global_options  # the same --config/-v/--log-format everywhere

    service = sub.add_parser("service")
    actions = service.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    helps = {
        "install": "write the unit (or launchd agent) for this install; print the next command",
        "uninstall": "remove the unit (or agent) file; print the command that stops it",
        "status": "is it installed, and up to date with this install; the manager's view",
    }
    for name, handler in (("install", install), ("uninstall", uninstall), ("status", status)):
        action = actions.add_parser(name, help=helps[name])
        scope = action.add_mutually_exclusive_group()
        scope.add_argument(
            "--user",
            dest="scope",
            action="store_const",
            const="user",
            help="a systemd user unit, or the launchd agent (the default)",
        )
        scope.add_argument(
            "--system",
            dest="scope",
            action="store_const",
            const="system",
            help="a systemd system unit (run with sudo; it runs as you, User=)",
        )
        action.add_argument(
            "--manager",
            choices=["systemd", "launchd"],
            default=default_manager(),
            help="service manager (default: launchd on macOS, else systemd)",
        )
        if name != "status":
            action.add_argument("--dry-run", action="store_true", help="print only, write nothing")
        action.set_defaults(handler=handler, scope="user")
        add_global_options(action, top=False)
    agent = actions.add_parser(
        "run-agent", help="run the daemon as the launchd agent does (exit code 2 reported as 0)"
    )
    agent.set_defaults(handler=run_agent)
    add_global_options(agent, top=False)


def _prepare(args: argparse.Namespace) -> tuple[Settings, Path, Target]:
    env = dict(os.environ)
    if args.scope == "system" and env.get("SUDO_USER") and os.geteuid() == 0:
        # under sudo, ~ and the default folders are those of the user the unit runs as
        os.environ["HOME"] = env["HOME"] = service_user(env).pw_dir
    settings, path = load_config(args, require_token=False, require_inboxes=True)
    return settings, path, target(args.manager, args.scope, env)


def install(args: argparse.Namespace) -> int:
    settings, config_path, where = _prepare(args)
    paths = install_paths(settings, config_path, scope=where.scope, env=os.environ)
    text = render(where, paths)
    warnings = _token_warnings(settings, where, paths.env_file) + [
        f"inbox {ib.path} does not exist yet: the service cannot start until it does"
        for ib in settings.inbox
        if not ib.path.is_dir()
    ]
    if args.dry_run:
        sys.stdout.write(text)
        _note(f"dry run: would write {where.path}", f"next: {where.next_command()}", *warnings)
        return EXIT_WARN if warnings else EXIT_OK
    owner = service_user(os.environ) if where.scope == "system" and os.geteuid() == 0 else None
    for folder in folders_to_create(paths):
        _make_folder(folder, owner)
    before = where.path.read_text(encoding="utf-8") if where.path.is_file() else None
    try:
        write_atomically(where.path, lambda fh: fh.write(text.encode("utf-8")))
        where.path.chmod(0o644)
    except PermissionError:
        raise ConfigError(
            f"service: cannot write {where.path}: run with sudo, or --dry-run and copy it"
        ) from None
    verb = "unchanged" if before == text else ("replaced" if before is not None else "wrote")
    print(f"{verb} {where.path} ({_describe(where, text)})")
    for line in warnings:
        print(f"warning: {line}")
    print(f"next: {where.next_command()}")
    if where.manager == "systemd" and where.scope == "user":
        print("(to keep it running while you are logged out: loginctl enable-linger $USER)")
    return EXIT_WARN if warnings else EXIT_OK


def _make_folder(folder: Path, owner: pwd.struct_passwd | None) -> None:
    """Create ``folder`` (and missing parents); under sudo they belong to the unit's user."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    if not missing:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for made in reversed(missing):
        if owner is not None:
            os.chown(made, owner.pw_uid, owner.pw_gid)
    print(f"created {folder}")


def _describe(where: Target, text: str) -> str:
    if where.manager == "launchd":
        return "launchd agent"
    home = next(line for line in text.splitlines() if line.startswith("ProtectHome="))
    token = "LoadCredential" if "\nLoadCredential=" in text else "EnvironmentFile"
    return f"{where.scope} unit, {home}, token by {token}"


def _token_warnings(settings: Settings, where: Target, env_file: object) -> list[str]:
    """The service does not see this shell's environment: a token only there is lost."""
    if settings.mvsep.api_token_file is not None:
        return []
    if settings.mvsep.api_token is not None and not os.environ.get(ENV_TOKEN):
        return []  # in the config file itself
    place = f"put {ENV_TOKEN}=... in {env_file} (chmod 600)" if where.manager == "systemd" else ""
    return [
        f"the service will not see ${ENV_TOKEN} from this shell: write the token to a file "
        "(chmod 600), set [mvsep] api_token_file to it and install again"
        + (f", or {place}" if place else "")
    ]


def _note(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def uninstall(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    where = target(args.manager, args.scope, env)
    candidates = [p for p in (where.path, where.wants_link) if p is not None]
    existing = [p for p in candidates if p.is_symlink() or p.exists()]
    if not existing:
        print(f"not installed: {where.path}")
        return EXIT_OK
    for path in existing:
        if args.dry_run:
            print(f"dry run: would remove {path}")
        else:
            path.unlink()
            print(f"removed {path}")
    print(f"next: {where.stop_command()}")
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    settings, config_path, where = _prepare(args)
    if not where.path.is_file():
        print(f"not installed: {where.path} (mvsep-watch service install --{where.scope})")
        return EXIT_WARN
    paths = install_paths(settings, config_path, scope=where.scope, env=os.environ)
    current = where.path.read_text(encoding="utf-8") == render(where, paths)
    state = "up to date" if current else "differs from this install: run service install again"
    print(f"installed: {where.path} ({state})")
    print(_manager_view(where))
    return EXIT_OK if current else EXIT_WARN


def _manager_view(where: Target) -> str:
    """What systemd (or launchd) says about it, if its tool is on PATH."""
    if where.manager == "launchd":
        cmd = ["launchctl", "list", "com.mvsep-watch"]
    else:
        scope = ["--user"] if where.scope == "user" else []
        props = ["-p", "ActiveState", "-p", "SubState", "-p", "StatusText"]
        cmd = ["systemctl", *scope, "show", "mvsep-watch", *props]
    if shutil.which(cmd[0]) is None:
        return f"{cmd[0]}: not found on PATH; cannot ask the service manager"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout or done.stderr).strip() or f"{cmd[0]} said nothing"


def run_agent(args: argparse.Namespace) -> int:
    """``mvsep-watch run`` for launchd: exit code 2 (a person must act) becomes 0, so
    ``KeepAlive`` (``SuccessfulExit = false``) does not restart it in a loop."""
    from daemon.runner import run_service

    try:
        settings, path = load_config(args, require_token=True, require_inboxes=True)
        code = run_service(settings, config_path=path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        code = EXIT_CONFIG
    if code == EXIT_CONFIG:
        print(
            "launchd: not restarting: fix the config, then "
            "launchctl kickstart gui/$(id -u)/com.mvsep-watch",
            file=sys.stderr,
        )
        return EXIT_OK
    return code
