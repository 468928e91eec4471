"""One hook run: an argv (no shell) with the job in its environment, a timeout, and its
output into the log (INFO; a failure or a timeout at WARNING). A hook's failure is only
logged and journaled: it never fails the job.

The hook runs in a session of its own; a timeout kills the whole process group (a shell
script's children too), so its pipes close and the runner goes on.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)

OUTPUT_MAX_CHARS = 4000
"""A hook's output is logged up to this many characters (its end, where errors are)."""


@dataclasses.dataclass(frozen=True)
class HookResult:
    returncode: int | None
    """None: it did not run, or was killed at its timeout."""
    output: str
    error: str | None
    """None when it exited 0; else what went wrong (``exit 3``, ``timed out after 5 s``)."""


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_MAX_CHARS else "…" + text[-OUTPUT_MAX_CHARS:]


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_hook(argv: Sequence[str], env: Mapping[str, str], *, timeout_s: float) -> HookResult:
    """Run ``argv`` with ``env`` (the whole environment); stdout and stderr together."""
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        return HookResult(None, "", f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        output, _ = proc.communicate()
        return HookResult(None, _tail(output or ""), f"timed out after {timeout_s:g} s; killed")
    error = None if proc.returncode == 0 else f"exit {proc.returncode}"
    return HookResult(proc.returncode, _tail(output or ""), error)


def log_hook(name: str, argv: Sequence[str], result: HookResult, **fields: Any) -> None:
    """One line per run: INFO when it exited 0, WARNING otherwise; its output in ``output``."""
    fields = {"hook": name, "argv": list(argv), "output": result.output, **fields}
    if result.error is None:
        log.info("hook finished", returncode=result.returncode, **fields)
    else:
        log.warning("hook failed", error=result.error, returncode=result.returncode, **fields)
