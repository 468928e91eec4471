"""Hooks: real ``python -c`` subprocesses run by the notifier's hook thread after a job is
filed or failed in a real journal: their environment, a timeout, a failure (logged, never
the job's), per-inbox and global hooks from a real config file."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from daemon_harness import wait_until
from notify_rig import fail_job, file_job
from structlog.testing import capture_logs

from daemon.config import load_settings
from daemon.jobs import JobState
from daemon.journal import Journal
from daemon.notify.hooks import run_hook
from daemon.notify.messages import notifications_line, process_env
from daemon.notify.outbox import HOOK
from daemon.notify.runner import Notifications
from daemon.notify.wiring import inbox_hooks

DUMP_ENV = (
    "import json, os, sys; "
    "json.dump(dict(os.environ), open(sys.argv[1], 'w')); print('hook says hi')"
)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as j:
        yield j


def hook_rows(journal: Journal) -> list[dict[str, Any]]:
    db = sqlite3.connect(journal.path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM outbox WHERE channel = 'hook'")]
    finally:
        db.close()


def started(journal: Journal, hooks: dict[str, list[str]], **kw: Any) -> Notifications:
    env = {**os.environ, "MVSEP_API_TOKEN": "secret-token-42", "MVSEP_WATCH_MVSEP__X": "y"}
    n = Notifications(journal=journal, hooks_for=lambda inbox: hooks, env=env, **kw)
    n.start()
    return n


def test_a_filed_job_runs_on_done_with_the_job_in_its_environment(
    journal: Journal, tmp_path: Path
) -> None:
    out = tmp_path / "env.json"
    n = started(journal, {"done": [sys.executable, "-c", DUMP_ENV, str(out)]})
    try:
        with capture_logs() as logs:
            job = file_job(journal, tmp_path)
            wait_until(lambda: bool(hook_rows(journal)) and hook_rows(journal)[0]["state"] ==
                       "sent", "the hook run")  # fmt: skip
    finally:
        n.stop()
    env = json.loads(out.read_text())
    assert env["MVSEP_WATCH_EVENT"] == "done" and env["MVSEP_WATCH_STATE"] == "filed"
    assert env["MVSEP_WATCH_JOB_ID"] == str(job.id)
    assert env["MVSEP_WATCH_FILE"] == str(tmp_path / "in" / "song.wav")
    assert env["MVSEP_WATCH_STEMS"].split(os.pathsep) == list(job.outputs)
    assert env["MVSEP_WATCH_OUTPUT_DIR"] == str(tmp_path / "out" / "song.wav")
    assert (env["MVSEP_WATCH_PRESET"], env["MVSEP_WATCH_INBOX"]) == ("vocals", "main")
    assert (env["MVSEP_WATCH_HASH"], env["MVSEP_WATCH_SHA256"]) == ("hash-song.wav", "sha-song.wav")
    assert (env["MVSEP_WATCH_CREDITS"], env["MVSEP_WATCH_REASON"]) == ("2", "")
    assert "MVSEP_API_TOKEN" not in env and "MVSEP_WATCH_MVSEP__X" not in env
    assert "secret-token-42" not in json.dumps(env)
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment is kept
    [line] = [x for x in logs if x["event"] == "hook finished"]
    assert line["output"] == "hook says hi" and line["job_id"] == job.id
    assert line["log_level"] == "info" and line["hook"] == "on_done"


def test_a_failing_hook_is_logged_and_never_fails_the_job_or_runs_twice(
    journal: Journal, tmp_path: Path
) -> None:
    script = "import os, sys; print('boom:', os.environ['MVSEP_WATCH_REASON']); sys.exit(3)"
    n = started(journal, {"failed": [sys.executable, "-c", script]})
    try:
        with capture_logs() as logs:
            job = fail_job(journal, tmp_path)
            wait_until(lambda: any(x["event"] == "hook failed" for x in logs), "the hook run")
            n.wake()
            wait_until(lambda: hook_rows(journal)[0]["state"] == "sent", "its row closed")
    finally:
        n.stop()
    [line] = [x for x in logs if x["event"] == "hook failed"]
    assert line["log_level"] == "warning" and line["error"] == "exit 3"
    assert line["output"] == "boom: not audio: no RIFF header" and line["file"] == str(
        job.source.path
    )
    assert journal.get(job.id).state is JobState.FAILED
    [row] = hook_rows(journal)
    assert (row["attempts"], row["last_error"]) == (1, "exit 3")  # run once, not retried
    text = notifications_line(journal.outbox_status())
    assert text is not None and "last error (hook on_failed" in text and "exit 3" in text


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    began = time.monotonic()
    result = run_hook([sys.executable, str(hook)], dict(os.environ), timeout_s=1.0)
    assert time.monotonic() - began < 10
    assert result.returncode is None and result.error == "timed out after 1 s; killed"
    assert result.output == "started"
    child = int(pid_file.read_text())
    wait_until(lambda: not alive(child), "the hook's child killed too", timeout_s=10)


def test_a_hook_that_cannot_start_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    result = run_hook([str(tmp_path / "no-such-hook")], {}, timeout_s=5)
    assert result.returncode is None and result.error is not None
    assert "cannot start" in result.error


def test_the_hook_environment_leaves_out_the_token() -> None:
    env = process_env(
        {"PATH": "/bin", "MVSEP_API_TOKEN": "t", "MVSEP_WATCH_MVSEP__API_TOKEN": "t2"},
        {"MVSEP_WATCH_JOB_ID": "7"},
    )
    assert env == {"PATH": "/bin", "MVSEP_WATCH_JOB_ID": "7"}


def test_inbox_hooks_override_the_global_ones(tmp_path: Path) -> None:
    config = {
        "notify": {"on_done": ["global-done"], "on_failed": ["global-failed"]},
        "presets": {"vocals": {"sep_type": 40}},
        "inbox": [
            {"name": "a", "path": str(tmp_path / "a"), "preset": "vocals",
             "output": str(tmp_path / "oa"), "on_done": ["a-done", "--flag"]},
            {"name": "b", "path": str(tmp_path / "b"), "preset": "vocals",
             "output": str(tmp_path / "ob"), "on_failed": []},
        ],
    }  # fmt: skip
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    settings, _ = load_settings(path, env={"MVSEP_API_TOKEN": "x"})
    assert inbox_hooks(settings, "a") == {"done": ["a-done", "--flag"], "failed": ["global-failed"]}
    assert inbox_hooks(settings, "b") == {"done": ["global-done"]}  # [] is no hook
    assert inbox_hooks(settings, "gone") == {"done": ["global-done"], "failed": ["global-failed"]}


def test_hooks_are_journaled_with_the_job_and_run_after_a_restart(
    tmp_path: Path,
) -> None:
    out = tmp_path / "env.json"
    hooks = {"done": [sys.executable, "-c", DUMP_ENV, str(out)]}
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        Notifications(
            journal=journal, hooks_for=lambda inbox: hooks
        ).attach()  # no threads: a crash
        job = file_job(journal, tmp_path)
        assert [r["state"] for r in hook_rows(journal)] == ["waiting"]
    assert not out.exists()
    with Journal(path) as journal:  # the next run's notifier knows no hooks: the row has it
        n = Notifications(journal=journal, hooks_for=lambda inbox: {})
        assert n.step(HOOK) == 1
    assert json.loads(out.read_text())["MVSEP_WATCH_JOB_ID"] == str(job.id)
