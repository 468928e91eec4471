"""`mvsep-watch service install | uninstall | status | run-agent` as real subprocesses, in a
temporary HOME and XDG_CONFIG_HOME (the user unit lands where systemd looks). systemctl is
never run: PATH holds no systemctl, so `status` says it cannot ask."""

from __future__ import annotations

import os
import plistlib
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import write_config

from daemon.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
NEXT_USER = "next: systemctl --user daemon-reload && systemctl --user enable --now mvsep-watch"


def cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MVSEP", "SUDO_"))}
    base.update(HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "xdg"), PATH=str(tmp / "bin"))
    (tmp / "bin").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "daemon", *args]
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**base, **env}, timeout=60
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text("service-token-1\n")
    token.chmod(0o600)
    path = write_config(tmp_path, "http://127.0.0.1:9", mvsep={"api_token_file": str(token)})
    text = path.read_text().replace('api_token = "harness-token-1"\n', "")
    path.write_text(text)
    return path


def unit_path(tmp: Path) -> Path:
    return tmp / "xdg" / "systemd" / "user" / "mvsep-watch.service"


def test_dry_run_prints_the_unit_with_this_installs_paths_and_writes_nothing(
    tmp_path: Path, config: Path
) -> None:
    done = cli(tmp_path, "service", "install", "--user", "--dry-run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    unit = done.stdout
    entry = Path(sys.executable).absolute().parent / "mvsep-watch"
    assert f"ExecStart={entry} --config {config} --log-format json run\n" in unit
    rw = f"ReadWritePaths={tmp_path / 'in'} {tmp_path / 'out'} {tmp_path / 'state'}\n"
    assert rw in unit
    assert f"LoadCredential=mvsep_token:{tmp_path / 'token'}\n" in unit
    assert "Type=notify\n" in unit and "WantedBy=default.target\n" in unit
    assert f"dry run: would write {unit_path(tmp_path)}" in done.stderr
    assert NEXT_USER in done.stderr
    assert not unit_path(tmp_path).exists() and not (tmp_path / "state").exists()


def test_install_writes_the_user_unit_where_systemd_looks_then_status_and_uninstall(
    tmp_path: Path, config: Path
) -> None:
    dry = cli(tmp_path, "--config", str(config), "service", "install", "--dry-run")
    done = cli(tmp_path, "--config", str(config), "service", "install", "--user")
    assert done.returncode == 0, done.stderr
    unit = unit_path(tmp_path)
    assert unit.read_text() == dry.stdout
    assert f"wrote {unit} (user unit, ProtectHome=" in done.stdout
    assert done.stdout.splitlines()[-2] == NEXT_USER
    assert (tmp_path / "state").is_dir() and (tmp_path / "out").is_dir()  # ReadWritePaths exist
    again = cli(tmp_path, "--config", str(config), "service", "install")
    assert f"unchanged {unit}" in again.stdout

    status = cli(tmp_path, "--config", str(config), "service", "status")
    assert status.returncode == 0, status.stderr
    assert f"installed: {unit} (up to date)" in status.stdout
    assert "systemctl: not found on PATH" in status.stdout

    wants = unit.parent / "default.target.wants" / unit.name  # what `enable` would link
    wants.parent.mkdir()
    wants.symlink_to(unit)
    gone = cli(tmp_path, "service", "uninstall", "--user")
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists() and not wants.is_symlink()
    assert (
        "next: systemctl --user stop mvsep-watch && systemctl --user daemon-reload" in gone.stdout
    )
    status = cli(tmp_path, "--config", str(config), "service", "status")
    assert status.returncode == 1 and f"not installed: {unit}" in status.stdout


def test_status_notices_a_unit_from_another_install(tmp_path: Path, config: Path) -> None:
    cli(tmp_path, "--config", str(config), "service", "install")
    unit = unit_path(tmp_path)
    unit.write_text(unit.read_text().replace("--log-format json", "--log-format console"))
    status = cli(tmp_path, "--config", str(config), "service", "status")
    assert status.returncode == 1
    assert "differs from this install: run service install again" in status.stdout


def test_system_dry_run_runs_as_this_user_and_goes_to_etc(tmp_path: Path, config: Path) -> None:
    done = cli(tmp_path, "service", "install", "--system", "--dry-run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    me = pwd.getpwuid(os.getuid()).pw_name
    assert f"\nUser={me}\n" in done.stdout and "WantedBy=multi-user.target\n" in done.stdout
    assert "Wants=network-online.target\n" in done.stdout
    assert "dry run: would write /etc/systemd/system/mvsep-watch.service" in done.stderr
    assert "next: sudo systemctl daemon-reload && sudo systemctl enable --now" in done.stderr


def test_launchd_dry_run_prints_a_plist(tmp_path: Path, config: Path) -> None:
    args = ["service", "install", "--manager", "launchd", "--dry-run", "--config", str(config)]
    done = cli(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    agent = plistlib.loads(done.stdout.encode())
    assert agent["ProgramArguments"][1:3] == ["--config", str(config)]
    plist = tmp_path / "home" / "Library" / "LaunchAgents" / "com.mvsep-watch.plist"
    assert f"would write {plist}" in done.stderr
    assert f"next: launchctl bootstrap gui/$(id -u) {plist}" in done.stderr


def test_a_token_only_in_this_shell_is_a_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace('api_token = "harness-token-1"\n', ""))
    done = cli(
        tmp_path,
        "service",
        "install",
        "--dry-run",
        "--config",
        str(config),
        MVSEP_API_TOKEN="shell-only-token",
    )
    assert done.returncode == 1
    assert "the service will not see $MVSEP_API_TOKEN from this shell" in done.stderr
    assert f"EnvironmentFile=-{tmp_path / 'env'}" in done.stdout
    assert "shell-only-token" not in done.stdout + done.stderr


def test_run_agent_reports_a_config_error_to_launchd_as_a_clean_exit(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text() + "\n[engin]\nx = 1\n")
    assert cli(tmp_path, "--config", str(config), "run").returncode == 2
    done = cli(tmp_path, "--config", str(config), "service", "run-agent")
    assert done.returncode == 0, done.stderr
    assert "config error:" in done.stderr and "launchd: not restarting" in done.stderr


def test_the_token_comes_from_the_systemd_credential(tmp_path: Path, config: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mvsep_token").write_text("credential-token\n")
    (creds / "mvsep_token").chmod(0o400)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert load_settings(config, env=env)[0].token() == "credential-token"  # over the file
    assert load_settings(config, env={})[0].token() == "service-token-1"
    env["MVSEP_API_TOKEN"] = "env-token"
    assert load_settings(config, env=env)[0].token() == "env-token"  # the env still wins


@pytest.mark.skipif(os.geteuid() != 0, reason="sudo's case: needs root (chown to another user)")
def test_under_sudo_the_unit_runs_as_the_sudo_user_who_owns_the_new_folders(
    tmp_path: Path, config: Path
) -> None:
    from daemon.commands.service import _make_folder

    nobody = pwd.getpwnam("nobody")
    args = ["service", "install", "--system", "--dry-run", "--config", str(config)]
    done = cli(tmp_path, *args, SUDO_USER="nobody")
    assert "\nUser=nobody\n" in done.stdout, done.stderr
    _make_folder(tmp_path / "new" / "state", nobody)
    assert (tmp_path / "new").stat().st_uid == nobody.pw_uid
    assert (tmp_path / "new" / "state").stat().st_uid == nobody.pw_uid
