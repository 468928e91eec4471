"""The rendered service files: systemd-analyze verify and security on real units, the plist
read back with plistlib, and the repository's example files equal to their rendering."""

from __future__ import annotations

import dataclasses
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from daemon import units
from daemon.units import InstallPaths, Scope, launchd_plist, systemd_unit

ROOT = Path(__file__).resolve().parents[1]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)
EXPOSURE_MAX = 3.0


def real_paths(tmp: Path, *, token: bool = True) -> InstallPaths:
    """An install whose executable exists (verify checks it), one inbox with a space."""
    p = PurePosixPath
    return InstallPaths(
        executable=p(Path(sys.executable).absolute().parent / "mvsep-watch"),
        config=p(tmp / "config.toml"),
        state_dirs=(p(tmp / "state"),),
        inboxes=(p(tmp / "My Inbox"), p(tmp / "other")),
        outputs=(p(tmp / "stems"), p(tmp / "My Inbox" / "stems")),
        other_dirs=(p(tmp / "failed"),),
        token_file=p(tmp / "token") if token else None,
        env_file=p(tmp / "env"),
        user="nobody",
        group="nogroup",
    )


def unit_lines(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return keys


def analyze(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    runtime = tmp / "runtime"  # --user needs a runtime dir, none exists under pytest
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "warning"}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def write_unit(tmp: Path, scope: Scope, paths: InstallPaths) -> Path:
    folder = tmp / scope
    folder.mkdir(exist_ok=True)
    unit = folder / units.UNIT_NAME
    unit.write_text(systemd_unit(paths, scope), encoding="utf-8")
    return unit


@needs_analyze
@pytest.mark.parametrize("scope", ["user", "system"])
def test_systemd_analyze_verify_accepts_the_rendered_unit(tmp_path: Path, scope: Scope) -> None:
    unit = write_unit(tmp_path, scope, real_paths(tmp_path))
    flag = ["--user"] if scope == "user" else []
    done = analyze(*flag, "verify", str(unit), tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mvsep-watch.service" not in done.stderr, done.stderr  # no warning about it


@needs_analyze
@pytest.mark.parametrize("scope", ["user", "system"])
def test_security_exposure_is_at_most_3(tmp_path: Path, scope: Scope) -> None:
    unit = write_unit(tmp_path, scope, real_paths(tmp_path))
    flag = ["--user"] if scope == "user" else []
    done = analyze(*flag, "security", "--offline=yes", str(unit), tmp=tmp_path)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    print(f"{scope} unit exposure: {found.group(1)}")
    assert float(found.group(1)) <= EXPOSURE_MAX, done.stdout


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above would notice a bad rendering: verify names the unit and the line of
    a bad value (its exit code stays 0 for a value it can ignore)."""
    unit = write_unit(tmp_path, "system", real_paths(tmp_path))
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=sturdy"))
    done = analyze("verify", str(unit), tmp=tmp_path)
    assert "mvsep-watch.service:" in done.stderr and "sturdy" in done.stderr


def test_type_notify_watchdog_reload_and_the_token_by_credential(tmp_path: Path) -> None:
    keys = unit_lines(systemd_unit(real_paths(tmp_path), "system"))
    assert keys["Type"] == ["notify"] and keys["NotifyAccess"] == ["main"]
    assert keys["WatchdogSec"] == [str(units.WATCHDOG_S)]
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["LoadCredential"] == [f"mvsep_token:{tmp_path / 'token'}"]
    assert "EnvironmentFile" not in keys
    assert keys["RestartPreventExitStatus"] == ["2"] and keys["UMask"] == ["0002"]
    assert keys["User"] == ["nobody"] and keys["Group"] == ["nogroup"]
    assert keys["Wants"] == ["network-online.target"]
    start = keys["ExecStart"][0]
    assert start.startswith(f"{Path(sys.executable).absolute().parent}/mvsep-watch --config ")
    assert start.endswith(f"{tmp_path / 'config.toml'} --log-format json run")


def test_without_a_token_file_the_token_comes_from_an_env_file(tmp_path: Path) -> None:
    keys = unit_lines(systemd_unit(real_paths(tmp_path, token=False), "user"))
    assert keys["EnvironmentFile"] == [f"-{tmp_path / 'env'}"]
    assert "LoadCredential" not in keys


def test_read_write_paths_are_exactly_the_inboxes_outputs_and_state(tmp_path: Path) -> None:
    keys = unit_lines(systemd_unit(real_paths(tmp_path), "system"))
    expected = [f'"{tmp_path}/My Inbox"', f"{tmp_path}/failed", f"{tmp_path}/other"]
    expected += [f"{tmp_path}/state", f"{tmp_path}/stems"]
    assert keys["ReadWritePaths"] == [" ".join(sorted(expected))]  # the nested output folds
    mounts = keys["RequiresMountsFor"][0]
    assert f'"{tmp_path}/My Inbox"' in mounts and f"{tmp_path}/stems" in mounts
    assert f"{tmp_path}/state" not in mounts
    assert keys["ProtectSystem"] == ["strict"]
    assert keys["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in keys["SystemCallFilter"]


def test_protect_home_follows_where_the_install_is() -> None:
    home = units.example_paths("/home/ann")
    assert unit_lines(systemd_unit(home, "user"))["ProtectHome"] == ["read-only"]
    srv = InstallPaths(
        executable=PurePosixPath("/opt/mvsep/bin/mvsep-watch"),
        config=PurePosixPath("/etc/mvsep-watch/config.toml"),
        state_dirs=(PurePosixPath("/var/lib/mvsep-watch"),),
        inboxes=(PurePosixPath("/srv/in"),),
        outputs=(PurePosixPath("/srv/out"),),
    )
    assert unit_lines(systemd_unit(srv, "system"))["ProtectHome"] == ["yes"]
    # a user unit's notify socket is under /run/user, which ProtectHome=yes would hide
    assert unit_lines(systemd_unit(srv, "user"))["ProtectHome"] == ["read-only"]


def test_private_tmp_is_off_only_when_the_install_uses_tmp() -> None:
    srv = InstallPaths(
        executable=PurePosixPath("/opt/mvsep/bin/mvsep-watch"),
        config=PurePosixPath("/etc/mvsep-watch/config.toml"),
        state_dirs=(PurePosixPath("/var/lib/mvsep-watch"),),
        inboxes=(PurePosixPath("/srv/in"),),
        outputs=(PurePosixPath("/srv/out"),),
    )
    assert unit_lines(systemd_unit(srv, "system"))["PrivateTmp"] == ["yes"]
    # an inbox under /tmp: PrivateTmp would hide it behind an empty /tmp of the unit's own
    in_tmp = dataclasses.replace(srv, inboxes=(PurePosixPath("/tmp/drop"),))
    assert unit_lines(systemd_unit(in_tmp, "system"))["PrivateTmp"] == ["no"]
    out_var_tmp = dataclasses.replace(srv, outputs=(PurePosixPath("/var/tmp/stems"),))
    assert unit_lines(systemd_unit(out_var_tmp, "user"))["PrivateTmp"] == ["no"]


def test_the_user_unit_waits_for_the_system_network_online_target() -> None:
    keys = unit_lines(systemd_unit(units.example_paths(), "user"))
    assert "After" not in keys and "Wants" not in keys  # they do nothing in a user manager
    (pre,) = keys["ExecStartPre"]
    assert "systemctl is-active --quiet network-online.target" in pre
    assert "$$(seq 60)" in pre  # systemd turns $$ into the shell's $
    assert keys["WantedBy"] == ["default.target"]


def test_specifiers_and_quotes_in_paths_are_escaped() -> None:
    assert units.quote(PurePosixPath("/srv/100% mix")) == '"/srv/100%% mix"'
    assert units.quote('/srv/say "hi"') == '"/srv/say \\"hi\\""'
    assert units.quote(PurePosixPath("/srv/plain")) == "/srv/plain"


def test_the_plist_parses_and_exit_2_cannot_loop() -> None:
    agent = plistlib.loads(launchd_plist(units.example_paths("/Users/ann")).encode())
    assert agent["Label"] == units.AGENT_LABEL
    assert agent["ProgramArguments"][0] == "/Users/ann/mvsep-watch/.venv/bin/mvsep-watch"
    assert agent["ProgramArguments"][-2:] == ["service", "run-agent"]  # maps exit 2 to 0
    assert agent["KeepAlive"] == {"SuccessfulExit": False, "Crashed": True}
    assert agent["ThrottleInterval"] >= 10
    assert agent["StandardOutPath"] == "/Users/ann/Library/Logs/mvsep-watch.log"
    assert agent["Umask"] == 0o002
    assert "MVSEP_API_TOKEN" not in launchd_plist(units.example_paths("/Users/ann"))


def test_the_repository_files_are_the_rendered_ones() -> None:
    for name, text in units.examples().items():
        on_disk = (ROOT / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} is stale: run .venv/bin/python -m daemon.units"
    plistlib.loads((ROOT / "launchd/com.mvsep-watch.plist").read_bytes())
