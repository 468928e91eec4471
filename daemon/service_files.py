"""Where this install's service file goes, and the real paths it is rendered from.

The I/O half of ``mvsep-watch service``: :func:`install_paths` reads the loaded config and
the running interpreter; :func:`target` names the file systemd or launchd reads;
:func:`render` is the text (``daemon/units.py``, pure).
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.units import AGENT_LABEL, UNIT_NAME, InstallPaths, Scope, launchd_plist, systemd_unit

Manager = Literal["systemd", "launchd"]
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
ENTRY_POINT = "mvsep-watch"


@dataclass(frozen=True)
class Target:
    """One service file: where it goes, what manages it, and the commands around it."""

    manager: Manager
    scope: Scope
    path: Path

    @property
    def systemctl(self) -> str:
        return "systemctl --user" if self.scope == "user" else "sudo systemctl"

    def next_command(self) -> str:
        if self.manager == "launchd":
            return f"launchctl bootstrap gui/$(id -u) {self.path}"
        name = UNIT_NAME.removesuffix(".service")
        return f"{self.systemctl} daemon-reload && {self.systemctl} enable --now {name}"

    def stop_command(self) -> str:
        if self.manager == "launchd":
            return f"launchctl bootout gui/$(id -u)/{AGENT_LABEL}"
        name = UNIT_NAME.removesuffix(".service")
        return f"{self.systemctl} stop {name} && {self.systemctl} daemon-reload"

    @property
    def wants_link(self) -> Path | None:
        """The link ``systemctl enable`` makes ([Install] WantedBy=)."""
        if self.manager == "launchd":
            return None
        wanted = "default.target" if self.scope == "user" else "multi-user.target"
        return self.path.parent / f"{wanted}.wants" / UNIT_NAME


def default_manager() -> Manager:
    return "launchd" if sys.platform == "darwin" else "systemd"


def target(manager: Manager, scope: Scope, env: Mapping[str, str]) -> Target:
    """The service file's path: the user unit where ``systemctl --user`` looks
    (``$XDG_CONFIG_HOME/systemd/user``), the system unit in ``/etc``, the agent in
    ``~/Library/LaunchAgents``."""
    home = Path(env.get("HOME") or Path.home())
    if manager == "launchd":
        if scope == "system":
            raise ConfigError("service: --system: launchd here installs a user agent; use --user")
        return Target(manager, scope, home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist")
    if scope == "system":
        return Target(manager, scope, SYSTEM_UNIT_DIR / UNIT_NAME)
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return Target(manager, scope, config_home / "systemd" / "user" / UNIT_NAME)


def service_user(env: Mapping[str, str]) -> pwd.struct_passwd:
    """Who the system unit runs as: the user behind ``sudo``, else whoever runs this."""
    name = env.get("SUDO_USER")
    if name and os.geteuid() == 0:
        return pwd.getpwnam(name)
    return pwd.getpwuid(os.getuid())


def entry_point() -> Path:
    """The ``mvsep-watch`` script of the running interpreter's venv (not resolved: the
    venv's python is a link out of the venv)."""
    script = Path(sys.executable).absolute().parent / ENTRY_POINT
    if not script.is_file():
        raise ConfigError(
            f"service: no {ENTRY_POINT} beside {sys.executable}: install mvsep-watch in a "
            "venv (python3 -m venv .venv && .venv/bin/pip install .) and run its "
            f".venv/bin/{ENTRY_POINT}"
        )
    return script


def _posix(path: Path) -> PurePosixPath:
    return PurePosixPath(os.path.abspath(path))


def _outside(path: Path, inbox: Path) -> bool:
    return inbox != path and inbox not in path.parents


def install_paths(
    settings: Settings, config_path: Path, *, scope: Scope, env: Mapping[str, str]
) -> InstallPaths:
    """The real paths of this install, from its config and interpreter."""
    inboxes = settings.inbox
    others = [
        folder
        for ib in inboxes
        for folder in (ib.archive_path, ib.failed_path)
        if _outside(folder, ib.path)
    ]
    user = service_user(env) if scope == "system" else None
    group = ""
    if user is not None:
        import grp

        group = grp.getgrgid(user.pw_gid).gr_name
    readme = Path(__file__).resolve().parents[1] / "README.md"
    token_file = settings.mvsep.api_token_file
    home = Path(env.get("HOME") or Path.home())
    return InstallPaths(
        executable=_posix(entry_point()),
        config=_posix(config_path),
        state_dirs=tuple(
            sorted(
                {_posix(settings.journal.path.parent), _posix(settings.catalogue.cache_path.parent)}
            )
        ),
        inboxes=tuple(_posix(ib.path) for ib in inboxes),
        outputs=tuple(_posix(ib.output) for ib in inboxes),
        other_dirs=tuple(_posix(p) for p in others),
        token_file=_posix(token_file) if token_file is not None else None,
        env_file=_posix(config_path.absolute().parent / "env"),
        user=user.pw_name if user is not None else "",
        group=group,
        log_file=_posix(home / "Library" / "Logs" / "mvsep-watch.log"),
        doc=readme.as_uri() if readme.is_file() else None,
    )


def render(where: Target, paths: InstallPaths) -> str:
    if where.manager == "launchd":
        return launchd_plist(paths)
    return systemd_unit(paths, where.scope)


def folders_to_create(paths: InstallPaths) -> list[Path]:
    """ReadWritePaths must exist when the service starts (else it fails at NAMESPACE):
    the state and output folders are made now, as the daemon would; inboxes are not."""
    return [Path(p) for p in (*paths.state_dirs, *paths.outputs, *paths.other_dirs)]
