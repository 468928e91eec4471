"""PURE: the service files of one install, rendered from its real paths.

``systemd_unit(paths, scope)`` is a hardened ``Type=notify`` unit (user or system);
``launchd_plist(paths)`` the macOS agent. No I/O here: ``daemon/commands/service.py``
finds the paths (interpreter, config, journal, inboxes, outputs) and writes the files;
``systemd/`` and ``launchd/`` hold these renderings for an example install
(``tests/test_service_units.py`` keeps them in step).
"""

from __future__ import annotations

import plistlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal

Scope = Literal["user", "system"]

UNIT_NAME = "mvsep-watch.service"
AGENT_LABEL = "com.mvsep-watch"
CREDENTIAL = "mvsep_token"  # daemon.config.CREDENTIAL_NAME (the daemon reads it)
WATCHDOG_S = 120
"""WatchdogSec: the engine's loop wakes at least every 30 s; the daemon pings every 60 s."""
HOME_ROOTS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
"""What ``ProtectHome=`` hides."""
ONLINE_WAIT_S = 60


@dataclass(frozen=True)
class InstallPaths:
    """Where this install lives; every path absolute."""

    executable: PurePosixPath  # the venv's `mvsep-watch` entry point
    config: PurePosixPath
    state_dirs: tuple[PurePosixPath, ...]  # the journal's and the catalogue cache's folders
    inboxes: tuple[PurePosixPath, ...]
    outputs: tuple[PurePosixPath, ...]
    other_dirs: tuple[PurePosixPath, ...] = ()  # archive/failed folders outside their inbox
    token_file: PurePosixPath | None = None  # [mvsep] api_token_file: LoadCredential
    env_file: PurePosixPath | None = None  # else MVSEP_API_TOKEN=... here (optional file)
    user: str = ""  # system unit: User=
    group: str = ""
    log_file: PurePosixPath | None = None  # launchd
    doc: str | None = None  # Documentation= (a file:// URL of the README)


def writable(paths: InstallPaths) -> list[PurePosixPath]:
    """ReadWritePaths: the inboxes, outputs and state, without a path inside another."""
    every = sorted(set(paths.inboxes + paths.outputs + paths.state_dirs + paths.other_dirs))
    return [p for p in every if not any(o != p and o in p.parents for o in every)]


def under_home(paths: InstallPaths) -> bool:
    """Whether anything the daemon reads or writes is where ``ProtectHome=`` hides."""
    used = [paths.executable, paths.config, *writable(paths)]
    return any(root == p or root in p.parents for p in used for root in HOME_ROOTS)


TMP_ROOTS = (PurePosixPath("/tmp"), PurePosixPath("/var/tmp"))


def under_tmp(paths: InstallPaths) -> bool:
    """Whether anything the daemon reads or writes is where ``PrivateTmp=`` hides."""
    used = [paths.executable, paths.config, *writable(paths)]
    return any(root == p or root in p.parents for p in used for root in TMP_ROOTS)


def quote(value: str | PurePosixPath) -> str:
    """One word of a unit file: ``%`` escaped (specifiers), quoted when it has spaces."""
    text = str(value).replace("%", "%%")
    if any(c in text for c in " \t\"'\\"):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _words(values: Iterable[str | PurePosixPath]) -> str:
    return " ".join(quote(v) for v in values)


def _header(scope: Scope) -> list[str]:
    how = "systemctl --user" if scope == "user" else "systemctl"
    return [
        f"# mvsep-watch as a systemd {scope} service. Written by `mvsep-watch service install"
        f" --{scope}`",
        "# from this install's paths; a new install overwrites it: put changes in a drop-in",
        f"# (`{how} edit mvsep-watch`).",
        "#",
        "# Signal contract:",
        "#   SIGTERM (stop): stop taking new work, let journal writes finish, leave jobs",
        "#   running at MVSEP, exit within 10 s; the next start resumes every unfinished job",
        "#   from the journal (nothing is sent twice). SIGKILL after TimeoutStopSec is safe.",
        "#   SIGHUP (reload): read the API token again and check the account at once.",
        "#   Exit code 2 = a person must act (config error, refused token, journal deleted):",
        "#   no restart (RestartPreventExitStatus=2); `journalctl"
        + (" --user" if scope == "user" else "")
        + " -u mvsep-watch` says why.",
        "",
    ]


def _unit_section(paths: InstallPaths, scope: Scope) -> list[str]:
    lines = ["[Unit]", "Description=mvsep-watch: watch folders and separate audio with MVSEP"]
    if paths.doc:
        lines.append(f"Documentation={paths.doc}")
    if scope == "system":
        lines += ["After=network-online.target remote-fs.target", "Wants=network-online.target"]
    lines.append(f"RequiresMountsFor={_words(sorted(set(paths.inboxes + paths.outputs)))}")
    return [*lines, ""]


def _online_wait() -> list[str]:
    """A user manager has no network-online.target of its own: ask the system manager."""
    script = (
        f"for i in $$(seq {ONLINE_WAIT_S}); do "  # $$: a literal $ for the shell
        "systemctl is-active --quiet network-online.target && exit 0; sleep 1; done; "
        "echo 'network-online.target not reached; starting anyway (the daemon retries)'"
    )
    return [
        "# network-online.target belongs to the system manager; a user unit's After= on it",
        f"# does nothing, so wait for it here (at most {ONLINE_WAIT_S} s, then start anyway).",
        f"ExecStartPre=/bin/sh -c {quote(script)}",
    ]


def _token(paths: InstallPaths) -> list[str]:
    if paths.token_file is not None:
        return [
            "# The token: systemd reads [mvsep] api_token_file before the sandbox starts and",
            "# hands it over as $CREDENTIALS_DIRECTORY/mvsep_token (the file may stay chmod 600).",
            f"LoadCredential={CREDENTIAL}:{quote(paths.token_file)}",
        ]
    env = paths.env_file or PurePosixPath("/etc/mvsep-watch/env")
    return [
        "# The token: MVSEP_API_TOKEN=... in this file (chmod 600), or set [mvsep]",
        "# api_token_file in the config and run `mvsep-watch service install` again.",
        f"EnvironmentFile=-{quote(env)}",
    ]


def _protect_home(paths: InstallPaths, scope: Scope) -> list[str]:
    if scope == "user":
        return [
            "# ProtectHome=read-only, not yes: a user unit's notify socket is in /run/user",
            "# (yes would hide it); the folders it writes are opened again by ReadWritePaths.",
            "ProtectHome=read-only",
        ]
    if under_home(paths):
        return [
            "# ProtectHome=read-only, not yes: this install (venv, config or folders) is under",
            "# /home; the folders it writes are opened again by ReadWritePaths.",
            "ProtectHome=read-only",
        ]
    return ["# Nothing of this install is under /home: hide it.", "ProtectHome=yes"]


HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
PrivateMounts=yes
PrivateDevices=yes
# PrivateUsers: only this user (and root) is mapped; group permissions still apply
PrivateUsers=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM"""


def _service_section(paths: InstallPaths, scope: Scope) -> list[str]:
    start: list[str | PurePosixPath] = [paths.executable, "--config", paths.config]
    start += ["--log-format", "json", "run"]
    lines = ["[Service]", "Type=notify", "NotifyAccess=main", f"WatchdogSec={WATCHDOG_S}"]
    if scope == "system":
        lines += [f"User={paths.user}", f"Group={paths.group}"]
    else:
        lines += _online_wait()
    lines += [
        f"ExecStart={_words(start)}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "TimeoutStartSec=120",
        "TimeoutStopSec=20",
        "Restart=on-failure",
        "RestartSec=30",
        "RestartPreventExitStatus=2",
        *_token(paths),
        "# Stems, archive and failed folders it creates are group-writable (0002), as a",
        "# shared NAS folder wants; 0022 keeps them yours alone (the journal is never shared).",
        "UMask=0002",
        "",
        "# Sandbox: read-only everywhere but the inboxes, outputs and state below.",
        f"ReadWritePaths={_words(writable(paths))}",
        *_protect_home(paths, scope),
        *_private_tmp(paths),
    ]
    return [*lines, *HARDENING.splitlines(), ""]


def _private_tmp(paths: InstallPaths) -> list[str]:
    if not under_tmp(paths):
        return ["PrivateTmp=yes"]
    return [
        "# PrivateTmp=no: this install (venv, config or folders) is under /tmp or /var/tmp,",
        "# which PrivateTmp would replace with an empty folder of its own.",
        "PrivateTmp=no",
    ]


def systemd_unit(paths: InstallPaths, scope: Scope) -> str:
    """The unit file text for ``scope``."""
    install = "default.target" if scope == "user" else "multi-user.target"
    lines = [
        *_header(scope),
        *_unit_section(paths, scope),
        *_service_section(paths, scope),
        "[Install]",
        f"WantedBy={install}",
    ]
    return "\n".join(lines) + "\n"


PLIST_NOTE = """\
<!--
  mvsep-watch as a launchd user agent (macOS). Written by `mvsep-watch service install`
  from this install's paths; a new install overwrites it.

  Start: launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/com.mvsep-watch.plist
  Stop:  launchctl bootout gui/$(id -u)/com.mvsep-watch

  Signal contract: launchd sends SIGTERM on stop and SIGKILL after ExitTimeOut seconds;
  mvsep-watch exits within 10 s, jobs keep running at MVSEP and resume on the next start.
  Restarts: KeepAlive restarts it when it crashes or exits with an error, at most every
  ThrottleInterval seconds. A config error (exit code 2: a person must act) is reported to
  launchd as a clean exit by `service run-agent`, so it is not restarted in a loop: read the
  log, fix the config, then `launchctl kickstart gui/$(id -u)/com.mvsep-watch`.
  The token: never in this file. Put it in a file (chmod 600) named by [mvsep]
  api_token_file in the config.
  Logs: launchd appends to StandardOutPath and never rotates it. Keep it small with
  newsyslog: as root, write /etc/newsyslog.d/mvsep-watch.conf with the line
    LOGFILE  644  5  10240  *  NJ
  (the StandardOutPath below; keep 5 files of 10 MB, bzip2). newsyslog renames the file;
  the running agent goes on writing to the renamed one until its next start.
-->
"""


def launchd_plist(paths: InstallPaths) -> str:
    """The agent plist (XML) with a comment saying how to use it."""
    log = str(paths.log_file or "/tmp/mvsep-watch.log")
    agent = {
        "Label": AGENT_LABEL,
        "ProgramArguments": [
            str(paths.executable),
            "--config",
            str(paths.config),
            "--log-format",
            "json",
            "service",
            "run-agent",
        ],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False, "Crashed": True},
        "ThrottleInterval": 30,
        "ExitTimeOut": 20,
        "ProcessType": "Background",
        "Umask": 0o002,
        "StandardOutPath": log,
        "StandardErrorPath": log,
        "EnvironmentVariables": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
    }
    text = plistlib.dumps(agent, sort_keys=False).decode("utf-8")
    head, _, body = text.partition("<plist")
    return head + PLIST_NOTE.replace("LOGFILE", log) + "<plist" + body


def example_paths(home: str = "/home/YOU") -> InstallPaths:
    """The install the files in ``systemd/`` and ``launchd/`` are rendered for: a clone at
    ``~/mvsep-watch`` with its venv, the default config and state folders, one inbox."""
    h = PurePosixPath(home)
    return InstallPaths(
        executable=h / "mvsep-watch/.venv/bin/mvsep-watch",
        config=h / ".config/mvsep-watch/config.toml",
        state_dirs=(h / ".local/state/mvsep-watch",),
        inboxes=(h / "Music/mvsep-inbox",),
        outputs=(h / "Music/mvsep-stems",),
        token_file=h / ".config/mvsep-watch/token",
        user="YOU",
        group="YOU",
        log_file=h / "Library/Logs/mvsep-watch.log",
    )


def examples() -> dict[str, str]:
    """The repository's example service files, by path: ``python -m daemon.units`` writes
    them again."""
    mac = replace(
        example_paths("/Users/YOU"),
        config=PurePosixPath("/Users/YOU/Library/Application Support/mvsep-watch/config.toml"),
    )
    return {
        "systemd/mvsep-watch.service": systemd_unit(example_paths(), "user"),
        "systemd/mvsep-watch-system.service": systemd_unit(example_paths(), "system"),
        "launchd/com.mvsep-watch.plist": launchd_plist(mac),
    }


if __name__ == "__main__":
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name, text in examples().items():
        (root / name).write_text(text, encoding="utf-8")
        print(f"wrote {name}")
