"""PURE: what hooks and notifications say about a job, the account and a day.

A hook gets the job in environment variables (``MVSEP_WATCH_*``, :func:`hook_env`); a
notification is a title and a body (:class:`Message`). Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.records import Job

ENV_PREFIX = "MVSEP_WATCH_"
HOOK_OF_TOPIC = {"done": "on_done", "failed": "on_failed"}
"""The hook run on each job topic (``[[inbox]] on_done``, ``on_failed``)."""
_SECRET_ENV = ("MVSEP_API_TOKEN", "CREDENTIALS_DIRECTORY")


@dataclasses.dataclass(frozen=True)
class Message:
    title: str
    body: str


def job_topic(job: Job, kind: str) -> str | None:
    """``done`` for a job just filed, ``failed`` for one just failed, else None."""
    if kind == "filed":
        return "done"
    if job.state.value == "failed" and kind in ("failed", "expired"):
        return "failed"
    return None


def output_dir(job: Job) -> str:
    """Where the job's stems are: their common folder, else the inbox's output folder."""
    if job.outputs:
        return os.path.commonpath([str(Path(p).parent) for p in job.outputs])
    return str(job.source.output_dir)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def hook_env(job: Job, topic: str, reason: str) -> dict[str, str]:
    """The ``MVSEP_WATCH_*`` variables a hook gets (every one set, empty when unknown)."""
    credits = job.used_credits if job.used_credits is not None else job.estimated_credits
    values = {
        "EVENT": topic,
        "STATE": job.state.value,
        "JOB_ID": str(job.id),
        "FILE": str(job.source.path),
        "INBOX": job.source.inbox,
        "PRESET": job.source.preset,
        "ALGORITHM": job.source.request.algorithm_name,
        "STEMS": os.pathsep.join(job.outputs),
        "OUTPUT_DIR": output_dir(job),
        "HASH": job.mvsep_hash or "",
        "SHA256": job.sha256 or "",
        "CREDITS": _number(credits),
        "REASON": reason if topic == "failed" else "",
    }
    return {ENV_PREFIX + key: value for key, value in values.items()}


def process_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """A hook's whole environment: the daemon's, less the token and every ``MVSEP_WATCH_``
    setting (a config override could hold it), plus the job's ``extra``."""
    kept = {k: v for k, v in base.items() if k not in _SECRET_ENV and not k.startswith(ENV_PREFIX)}
    return kept | dict(extra)


def job_message(job: Job, topic: str, reason: str) -> Message:
    name = job.source.path.name
    where = f"inbox {job.source.inbox}, preset {job.source.preset}"
    if topic == "failed":
        return Message(
            title=f"mvsep-watch: {name} failed",
            body=f"{job.source.path} ({where}) failed: {reason or job.last_error or 'unknown'}",
        )
    if job.used_credits is not None:  # the history's figure is read after filing, in batches
        cost = f"; {_number(job.used_credits)} credits"
    elif job.estimated_credits is not None:
        cost = f"; about {_number(job.estimated_credits)} credits (estimated)"
    else:
        cost = ""
    return Message(
        title=f"mvsep-watch: {name} separated",
        body=f"{job.source.path} ({where}): {len(job.outputs)} stem(s) filed in "
        f"{output_dir(job)}{cost}",
    )


def account_message(text: str) -> Message:
    return Message(
        title="mvsep-watch: submits paused",
        body=f"MVSEP refused the account: {text}. Files wait in their inboxes and go on "
        "once the account works again.",
    )


def summary_message(day: str, filed: Sequence[Job], failed: Sequence[Job]) -> Message:
    """The daily summary: files filed, stems, credits, failures (the first ten named)."""
    stems = sum(len(job.outputs) for job in filed)
    credits = sum(job.used_credits or 0.0 for job in filed)
    lines = [
        f"files filed: {len(filed)}",
        f"stems: {stems}",
        f"credits used: {credits:g}",
        f"failures: {len(failed)}",
    ]
    lines += [f"  failed: {job.source.path} ({job.last_error or 'unknown'})" for job in failed[:10]]
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more (mvsep-watch jobs list --state failed)")
    return Message(title=f"mvsep-watch: summary of the day to {day}", body="\n".join(lines))


def _utc(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="seconds")


def notifications_line(outbox: dict[str, Any] | None) -> str | None:
    """``notifications: N waiting[, M given up][, last error …]``; None with nothing to say."""
    if outbox is None:
        return None
    waiting, given_up = outbox["counts"].get("waiting", 0), outbox["counts"].get("given_up", 0)
    error = outbox["last_error"]
    if not (waiting or given_up or error):
        return None
    line = f"notifications: {waiting} waiting" + (f", {given_up} given up" if given_up else "")
    if error is not None:
        what = f"hook {error['target']}" if error["channel"] == "hook" else error["topic"]
        line += f", last error ({what}, {_utc(error['at'])}): {error['error']}"
    return line
