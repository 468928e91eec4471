"""`mvsep-watch status`: what the journal knows, for a person or a script.

Reads the journal read-only, so it works while the daemon runs. The journal never holds
the API token, so nothing here can print it.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO

from daemon.config import Settings
from daemon.jobs import Job
from daemon.journal import Journal


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "file": str(job.source.path),
        "inbox": job.source.inbox,
        "preset": job.source.preset,
        "state": str(job.state),
        "mvsep_status": job.mvsep_status,
        "mvsep_hash": job.mvsep_hash,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "estimated_credits": job.estimated_credits,
        "used_credits": job.used_credits,
        "outputs": list(job.outputs),
        "updated_at": datetime.fromtimestamp(job.updated_at).isoformat(timespec="seconds"),
    }


def print_status(
    settings: Settings, *, as_json: bool = False, limit: int = 20, out: TextIO | None = None
) -> int:
    stream = out if out is not None else sys.stdout
    path = settings.journal.path
    if not path.exists():
        print(f"no journal at {path} yet: the daemon has not run with this config", file=stream)
        return 0
    with Journal(path, read_only=True) as journal:
        counts = journal.counts_by_state()
        recent = [job_summary(job) for job in journal.recent_jobs(limit)]
    if as_json:
        json.dump({"journal": str(path), "counts": counts, "recent": recent}, stream, indent=2)
        stream.write("\n")
        return 0
    total = sum(counts.values())
    print(f"journal: {path} ({total} job(s))", file=stream)
    for state, n in sorted(counts.items()):
        print(f"  {state:<12} {n}", file=stream)
    if recent:
        print(f"\nmost recent {len(recent)}:", file=stream)
    for job in recent:
        status = f"{job['state']}" + (f"/{job['mvsep_status']}" if job["mvsep_status"] else "")
        line = f"  #{job['id']:<5} {status:<22} {job['updated_at']}  {job['file']}"
        if job["last_error"]:
            line += f"\n         last error: {job['last_error']}"
        print(line, file=stream)
    return 0
