"""`mvsep-watch status`: what the journal knows, for a person or a script.

Reads the journal read-only, so it works while the daemon runs. The journal never holds
the API token, so nothing here can print it.

Each job shows its current state (MVSEP's own status only while the job is at MVSEP, never
a stale one beside a terminal state), its inbox, preset and output folder, what it cost
(the history's ``credits``; 0 for a job filed from an earlier result; else the estimate,
marked as such), its attempts and its last error or note, its age and its progress (queue
position, chunks, upload/download %: journaled by the daemon at most about once a second).
Each inbox shows its folder, its watch mode and why, whether it is paused and why (the
daemon's notes: as of its last run when it is not running) and its jobs per state; then
the totals and the credits used today. One query per table, none per job. Times are UTC
with the zone.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from daemon.config import Settings
from daemon.jobs import Job, JobState
from daemon.journal import ACCOUNT_NOTE, INBOX_NOTE, Journal, daemon_pid
from daemon.notify.messages import notifications_line

_AT_MVSEP = frozenset({JobState.SUBMITTING, JobState.QUEUED})


def utc_text(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="seconds")


def credits_of(job: Job) -> float | None:
    """What the job cost: the history's figure, 0 for a copy of an earlier result."""
    if job.used_credits is not None:
        return job.used_credits
    if job.duplicate_of is not None and job.mvsep_hash is None:
        return 0.0
    return None


def note_of(job: Job, earlier: Job | None) -> str | None:
    """A line for a job filed from an earlier one's result (where its stems are)."""
    if job.duplicate_of is None or job.state is not JobState.FILED:
        return None
    if earlier is not None and job.outputs and tuple(job.outputs) == tuple(earlier.outputs):
        where = sorted({str(Path(p).parent) for p in job.outputs})
        return (
            f"same audio as job {job.duplicate_of}: nothing new filed; its stems are in "
            + ", ".join(where)
        )
    return f"same audio as job {job.duplicate_of}: filed from its result (nothing sent)"


def job_summary(job: Job, earlier: Job | None = None) -> dict[str, Any]:
    at_mvsep = job.state in _AT_MVSEP or job.resume_state in _AT_MVSEP
    return {
        "id": job.id,
        "file": str(job.source.path),
        "inbox": job.source.inbox,
        "preset": job.source.preset,
        "output_dir": str(job.source.output_dir),
        "state": str(job.state),
        "mvsep_status": job.mvsep_status if at_mvsep and not job.state.is_terminal else None,
        "mvsep_hash": job.mvsep_hash,
        "attempts": job.attempts,
        "last_error": None if job.state is JobState.HELD else job.last_error,
        "held": job.last_error if job.state is JobState.HELD else None,  # the credit guard's
        "note": note_of(job, earlier),
        "credits": credits_of(job),
        "estimated_credits": job.estimated_credits,
        "outputs": list(job.outputs),
        "source_disposed": job.source_disposed,
        "updated_at": utc_text(job.updated_at),
    }


def summaries(journal: Journal, jobs: list[Job]) -> list[dict[str, Any]]:
    """One summary per job: two queries whatever the count (earlier jobs, progress)."""
    earlier = journal.jobs_by_id(j.duplicate_of for j in jobs if j.duplicate_of is not None)
    progress = journal.progress_all()
    now = time.time()
    out = []
    for job in jobs:
        summary = job_summary(job, earlier.get(job.duplicate_of or -1))
        summary["age_s"] = round(max(0.0, now - job.created_at), 1)
        summary["progress"] = None if job.state.is_terminal else progress.get(job.id)
        out.append(summary)
    return out


def progress_text(progress: dict[str, Any] | None) -> str:
    """``queue 3``, ``chunks 2/5``, ``upload 40%``, ``download vocals 80%``, or ``-``."""
    if not progress:
        return "-"
    parts = []
    queue = progress.get("queue") or {}
    position = queue.get("current_order", queue.get("queue_count"))
    if position is not None and queue.get("status") == "waiting":
        parts.append(f"queue {position}")
    if queue.get("all_chunks"):
        parts.append(f"chunks {queue.get('finished_chunks') or 0}/{queue['all_chunks']}")
    for kind, done_key in (("upload", "sent"), ("download", "received")):
        data = progress.get(kind) or {}
        total = data.get("total")
        if total:
            stem = f" {data['stem']}" if data.get("stem") else ""
            parts.append(f"{kind}{stem} {100 * (data.get(done_key) or 0) // total}%")
    return ", ".join(parts) or "-"


def age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _credits_text(job: dict[str, Any]) -> str:
    if job["credits"] is not None:
        return f"{job['credits']:g} credits"
    if job["estimated_credits"] is not None:
        return f"~{job['estimated_credits']:g} credits (estimate)"
    return "credits unknown"


JOB_HEADER = f"  {'ID':<6} {'STATE':<22} {'AGE':>4}  {'PROGRESS':<24} FILE"


def job_lines(job: dict[str, Any]) -> list[str]:
    """A job's table row (id, state, age, progress, file) and its detail lines."""
    status = job["state"] + (f"/{job['mvsep_status']}" if job["mvsep_status"] else "")
    progress = progress_text(job.get("progress"))
    lines = [
        f"  #{job['id']:<5} {status:<22} {age_text(job.get('age_s') or 0):>4}  "
        f"{progress:<24} {job['file']}",
        f"         inbox {job['inbox']}, preset {job['preset']}, output {job['output_dir']}, "
        f"{_credits_text(job)}"
        + (f", {job['attempts']} attempt(s)" if job["attempts"] else "")
        + f", updated {job['updated_at']}",
    ]
    if job["last_error"]:
        lines.append(f"         last error: {job['last_error']}")
    if job.get("held"):
        lines.append(f"         held: {job['held']}")
    if job["note"]:
        lines.append(f"         note: {job['note']}")
    where = input_text(job.get("source_disposed"))
    if where:
        lines.append(f"         input: {where}")
    return lines


def input_text(disposed: str | None) -> str | None:
    """Where a finished job's input went, for a person (``failed:PATH`` and the rest)."""
    how, _, path = (disposed or "").partition(":")
    return {
        "failed": f"moved to {path} (its reason beside it; `mvsep-watch jobs retry` puts it back)",
        "archived": f"archived at {path}",
        "deleted": "deleted after its stems were filed",
        "removed": "removed from the inbox",
        "missing": "no longer in the inbox when the job ended",
        "replaced": "another file is at its path now (left alone)",
        "left": "left in place (it could not be moved)",
    }.get(how)


def inboxes_of(settings: Settings) -> list[dict[str, Any]]:
    """The configured inboxes: where files are picked up, with which preset, to where."""
    return [
        {
            "inbox": inbox.display_name,
            "path": str(inbox.path),
            "preset": inbox.preset,
            "output_dir": str(inbox.output),
        }
        for inbox in settings.inbox
    ]


def _with_health(inboxes: list[dict[str, Any]], journal: Journal) -> None:
    """Each inbox's watch mode and pause (the daemon's notes) and its jobs per state."""
    notes = journal.notes_with(INBOX_NOTE)
    counts = journal.counts_by_inbox()
    for inbox in inboxes:
        note = notes.get(inbox["inbox"])
        health = json.loads(note[0]) if note is not None else {}
        inbox["mode"] = health.get("mode")
        inbox["mode_reason"] = health.get("reason")
        inbox["paused"] = health.get("paused")
        inbox["mode_since"] = None if note is None else utc_text(note[1])
        inbox["counts"] = counts.get(inbox["inbox"], {})


def _today_start() -> float:
    local = datetime.now().astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def collect(settings: Settings, *, limit: int = 20) -> dict[str, Any]:
    """What ``status`` shows, as plain data (the ``--json`` form). One query per table."""
    path = settings.journal.path
    inboxes = inboxes_of(settings)
    pid = daemon_pid(path)
    daemon = {"running": pid is not None, "pid": pid}
    with Journal(path, read_only=True) as journal:
        counts = journal.counts_by_state()
        recent = summaries(journal, journal.recent_jobs(limit))
        paused = journal.note(ACCOUNT_NOTE)
        _with_health(inboxes, journal)
        today = journal.credits_since(_today_start())
        outbox = journal.outbox_status()
    account = None if paused is None else {"paused": paused[0], "since": utc_text(paused[1])}
    return {"journal": str(path), "daemon": daemon, "account": account, "inboxes": inboxes,
            "counts": counts, "total": sum(counts.values()), "credits_today": today,
            "recent": recent, "notifications": outbox}  # fmt: skip


def _dump(data: dict[str, Any], stream: TextIO) -> None:
    json.dump(data, stream, indent=2)
    stream.write("\n")


def _inbox_lines(inbox: dict[str, Any], running: bool) -> list[str]:
    lines = [f"inbox {inbox['inbox']}: {inbox['path']} (preset {inbox['preset']}) "
             f"-> {inbox['output_dir']}"]  # fmt: skip
    if inbox["mode"] is not None:
        mode = "polling" if inbox["mode"] == "polling" else "native events"
        why = f" ({inbox['mode_reason']})" if inbox["mode_reason"] else ""
        when = "" if running else f", as of the daemon's last run ({inbox['mode_since']})"
        lines.append(f"    watch: {mode}{why}{when}")
    if inbox["paused"]:
        lines.append(f"    PAUSED: {inbox['paused']}")
    counts = ", ".join(f"{state} {n}" for state, n in sorted(inbox["counts"].items()))
    lines.append(f"    jobs: {counts or 'none'}")
    return lines


def print_status(
    settings: Settings, *, as_json: bool = False, limit: int = 20, out: TextIO | None = None
) -> int:
    stream = out if out is not None else sys.stdout
    path = settings.journal.path
    if not path.exists():
        note = f"no journal at {path} yet: the daemon has not run with this config"
        if as_json:  # a script reads JSON whatever the case; the exit code stays 0
            _dump({"journal": None, "note": note, "inboxes": inboxes_of(settings),
                   "account": None, "counts": {}, "recent": []}, stream)  # fmt: skip
        else:
            print(note, file=stream)
        return 0
    data = collect(settings, limit=limit)
    if as_json:
        _dump(data, stream)
        return 0
    print("\n".join(render(data)), file=stream)
    return 0


def render(data: dict[str, Any]) -> list[str]:
    """The terminal form of :func:`collect`'s data."""
    lines: list[str] = []
    account, daemon = data["account"], data["daemon"]
    if account is not None:
        lines.append(f"!! SUBMITS PAUSED since {account['since']}: {account['paused']}")
        lines.append("!! files stay where they are; they go on once the account works again "
                     "(or at once on SIGHUP after the token is fixed)")  # fmt: skip
    running = f"running (pid {daemon['pid']})" if daemon["running"] else "not running"
    lines.append(f"daemon: {running}; journal: {data['journal']} ({data['total']} job(s)); "
                 f"credits used today: {data['credits_today']:g}")  # fmt: skip
    for inbox in data["inboxes"]:
        lines.extend(_inbox_lines(inbox, daemon["running"]))
    totals = ", ".join(f"{state} {n}" for state, n in sorted(data["counts"].items()) if n)
    lines.append(f"all jobs: {totals or 'none'}")
    if (notes := notifications_line(data.get("notifications"))) is not None:
        lines.append(notes)
    if data["recent"]:
        lines.append(f"\nmost recent {len(data['recent'])}:")
        lines.append(JOB_HEADER)
    for job in data["recent"]:
        lines.extend(job_lines(job))
    return lines
