"""`mvsep-watch status`: what the journal knows, for a person or a script.

Reads the journal read-only, so it works while the daemon runs. The journal never holds
the API token, so nothing here can print it.

Each job shows its current state (MVSEP's own status only while the job is at MVSEP, never
a stale one beside a terminal state), its inbox, preset and output folder, what it cost
(the history's ``credits``; 0 for a job filed from an earlier result; else the estimate,
marked as such), its attempts and its last error or note. Times are UTC with the zone.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from daemon.config import Settings
from daemon.jobs import Job, JobState
from daemon.journal import ACCOUNT_NOTE, Journal

_AT_MVSEP = frozenset({JobState.SUBMITTING, JobState.QUEUED})


def _utc(stamp: float) -> str:
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
        "last_error": job.last_error,
        "note": note_of(job, earlier),
        "credits": credits_of(job),
        "estimated_credits": job.estimated_credits,
        "outputs": list(job.outputs),
        "source_disposed": job.source_disposed,
        "updated_at": _utc(job.updated_at),
    }


def _summaries(journal: Journal, limit: int) -> list[dict[str, Any]]:
    out = []
    for job in journal.recent_jobs(limit):
        earlier = None
        if job.duplicate_of is not None:
            try:
                earlier = journal.get(job.duplicate_of)
            except KeyError:
                earlier = None
        out.append(job_summary(job, earlier))
    return out


def _credits_text(job: dict[str, Any]) -> str:
    if job["credits"] is not None:
        return f"{job['credits']:g} credits"
    if job["estimated_credits"] is not None:
        return f"~{job['estimated_credits']:g} credits (estimate)"
    return "credits unknown"


def _job_lines(job: dict[str, Any]) -> list[str]:
    status = job["state"] + (f"/{job['mvsep_status']}" if job["mvsep_status"] else "")
    lines = [
        f"  #{job['id']:<5} {status:<22} {job['updated_at']}  {job['file']}",
        f"         inbox {job['inbox']}, preset {job['preset']}, output {job['output_dir']}, "
        f"{_credits_text(job)}" + (f", {job['attempts']} attempt(s)" if job["attempts"] else ""),
    ]
    if job["last_error"]:
        lines.append(f"         last error: {job['last_error']}")
    if job["note"]:
        lines.append(f"         note: {job['note']}")
    return lines


def inboxes_of(settings: Settings) -> list[dict[str, str]]:
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


def print_status(
    settings: Settings, *, as_json: bool = False, limit: int = 20, out: TextIO | None = None
) -> int:
    stream = out if out is not None else sys.stdout
    path = settings.journal.path
    if not path.exists():
        note = f"no journal at {path} yet: the daemon has not run with this config"
        if as_json:  # a script reads JSON whatever the case; the exit code stays 0
            data: dict[str, Any] = {"journal": None, "note": note, "inboxes": inboxes_of(settings),
                    "account": None, "counts": {}, "recent": []}  # fmt: skip
            json.dump(data, stream, indent=2)
            stream.write("\n")
        else:
            print(note, file=stream)
        return 0
    with Journal(path, read_only=True) as journal:
        counts = journal.counts_by_state()
        recent = _summaries(journal, limit)
        paused = journal.note(ACCOUNT_NOTE)
    inboxes = inboxes_of(settings)
    account = None if paused is None else {"paused": paused[0], "since": _utc(paused[1])}
    if as_json:
        data = {
            "journal": str(path),
            "account": account,
            "inboxes": inboxes,
            "counts": counts,
            "recent": recent,
        }
        json.dump(data, stream, indent=2)
        stream.write("\n")
        return 0
    total = sum(counts.values())
    if account is not None:
        print(f"!! SUBMITS PAUSED since {account['since']}: {account['paused']}", file=stream)
        print("!! files stay where they are; they go on once the account works again "
              "(or at once on SIGHUP after the token is fixed)", file=stream)  # fmt: skip
    print(f"journal: {path} ({total} job(s))", file=stream)
    for inbox in inboxes:
        print(f"inbox {inbox['inbox']}: {inbox['path']} (preset {inbox['preset']}) "
              f"-> {inbox['output_dir']}", file=stream)  # fmt: skip
    for state, n in sorted(counts.items()):
        print(f"  {state:<12} {n}", file=stream)
    if recent:
        print(f"\nmost recent {len(recent)}:", file=stream)
    for job in recent:
        print("\n".join(_job_lines(job)), file=stream)
    return 0
