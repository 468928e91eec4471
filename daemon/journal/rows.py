"""Rows <-> objects: how a :class:`~daemon.jobs.Job` and an event are stored in SQLite."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from daemon.jobs import Job, JobState, SourceFile, result_file_from_json, result_file_to_json

#: ``source_disposed`` values under which the source still sits where it was seen
#: (``left``: a disposal that kept failing was given up).
SOURCE_IN_PLACE = ("kept", "left")

_MUTABLE = (
    "state",
    "sha256",
    "resume_state",
    "mvsep_status",
    "mvsep_hash",
    "nonce",
    "intent_at",
    "base_url",
    "attempts",
    "first_error_at",
    "next_attempt_at",
    "last_error",
    "cancel_requested",
    "duplicate_of",
    "estimated_credits",
    "used_credits",
    "result_files",
    "planned_outputs",
    "outputs",
    "source_disposed",
    "updated_at",
)


def same_version(a: Job, b: Job) -> bool:
    """Whether two views of one job agree on everything a change can alter."""
    return a.id == b.id and all(getattr(a, name) == getattr(b, name) for name in _MUTABLE)


@dataclass(frozen=True)
class EventRow:
    """One line of the append-only event log."""

    id: int
    job_id: int
    at: float
    kind: str
    from_state: str | None
    to_state: str
    reason: str
    data: dict[str, Any] | None


def insert_event(
    db: sqlite3.Connection,
    job_id: int,
    at: float,
    kind: str,
    from_state: JobState | None,
    to_state: JobState,
    reason: str,
    data: dict[str, Any] | None,
) -> None:
    db.execute(
        "INSERT INTO events (job_id, at, kind, from_state, to_state, reason, data)"
        " VALUES (?,?,?,?,?,?,?)",
        (
            job_id,
            at,
            kind,
            None if from_state is None else from_state.value,
            to_state.value,
            reason,
            None if data is None else json.dumps(data, sort_keys=True, default=str),
        ),
    )


def write_job(db: sqlite3.Connection, job: Job) -> None:
    values = {
        "state": job.state.value,
        "sha256": job.sha256,
        "resume_state": None if job.resume_state is None else job.resume_state.value,
        "mvsep_status": job.mvsep_status,
        "mvsep_hash": job.mvsep_hash,
        "nonce": job.nonce,
        "intent_at": job.intent_at,
        "base_url": job.base_url,
        "attempts": job.attempts,
        "first_error_at": job.first_error_at,
        "next_attempt_at": job.next_attempt_at,
        "last_error": job.last_error,
        "cancel_requested": job.cancel_requested,
        "duplicate_of": job.duplicate_of,
        "estimated_credits": job.estimated_credits,
        "used_credits": job.used_credits,
        "result_files": json.dumps([result_file_to_json(f) for f in job.result_files]),
        "planned_outputs": None
        if job.planned_outputs is None
        else json.dumps(list(job.planned_outputs)),
        "outputs": json.dumps(list(job.outputs)),
        "source_disposed": job.source_disposed,
        "updated_at": job.updated_at,
    }
    sets = ", ".join(f"{name} = ?" for name in _MUTABLE)
    db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*(values[n] for n in _MUTABLE), job.id))


def job_from_row(row: sqlite3.Row) -> Job:
    planned = row["planned_outputs"]
    resume = row["resume_state"]
    return Job(
        id=int(row["id"]),
        source=SourceFile.from_json(json.loads(row["source_json"])),
        size=int(row["size"]),
        mtime=float(row["mtime"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        state=JobState(row["state"]),
        sha256=row["sha256"],
        resume_state=None if resume is None else JobState(resume),
        mvsep_status=row["mvsep_status"],
        mvsep_hash=row["mvsep_hash"],
        nonce=row["nonce"],
        intent_at=row["intent_at"],
        base_url=row["base_url"],
        attempts=int(row["attempts"]),
        first_error_at=row["first_error_at"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        cancel_requested=row["cancel_requested"],
        duplicate_of=row["duplicate_of"],
        estimated_credits=row["estimated_credits"],
        used_credits=row["used_credits"],
        result_files=tuple(result_file_from_json(d) for d in json.loads(row["result_files"])),
        planned_outputs=None if planned is None else tuple(json.loads(planned)),
        outputs=tuple(json.loads(row["outputs"])),
        source_disposed=row["source_disposed"],
    )


def event_from_row(row: sqlite3.Row) -> EventRow:
    data = row["data"]
    return EventRow(
        id=int(row["id"]),
        job_id=int(row["job_id"]),
        at=float(row["at"]),
        kind=str(row["kind"]),
        from_state=row["from_state"],
        to_state=str(row["to_state"]),
        reason=str(row["reason"]),
        data=None if data is None else json.loads(data),
    )
