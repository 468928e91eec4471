"""The SQLite job journal: the single source of truth of every job, crash-safe.

One file (WAL, ``synchronous=FULL``), one connection shared by the engine's threads behind a
lock, one :meth:`Journal.transaction` (``BEGIN IMMEDIATE``). Every state change reads the
row, applies the PURE :func:`daemon.jobs.transition` and writes the row AND an event row in
one committed transaction, before the caller performs the action it records.

A second daemon on the same journal is refused: the journal holds an exclusive ``flock`` on
``<journal>.lock`` (with the holder's pid written in it) for its whole lifetime. A journal
written by a newer schema is refused with :class:`~daemon.errors.JournalVersionError`.
The API token is never stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from daemon.errors import JournalError, JournalLockedError, JournalVersionError
from daemon.jobs import (
    ACTIVE_STATES,
    CancelDeclined,
    Cancelled,
    CancelProcessing,
    Clock,
    Deferred,
    Duplicate,
    Event,
    Expired,
    Failed,
    Filed,
    Job,
    JobState,
    OutputsPlanned,
    Prepared,
    ReconciledAbsent,
    ResultFile,
    ResultReady,
    Resumed,
    SourceFile,
    StatusSeen,
    SubmitIntent,
    Submitted,
    cancel_event,
    describe,
    result_file_from_json,
    result_file_to_json,
    transition,
)

SCHEMA_VERSION = 1

_V1 = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY,
        source_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime REAL NOT NULL,
        sha256 TEXT,
        inbox TEXT NOT NULL,
        preset TEXT NOT NULL,
        request_key TEXT NOT NULL,
        source_json TEXT NOT NULL,
        state TEXT NOT NULL,
        resume_state TEXT,
        mvsep_status TEXT,
        mvsep_hash TEXT,
        nonce TEXT,
        intent_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        first_error_at REAL,
        next_attempt_at REAL,
        last_error TEXT,
        cancel_requested TEXT,
        duplicate_of INTEGER REFERENCES jobs(id),
        estimated_credits REAL,
        used_credits REAL,
        result_files TEXT NOT NULL DEFAULT '[]',
        planned_outputs TEXT,
        outputs TEXT NOT NULL DEFAULT '[]',
        source_disposed TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)",
    "CREATE INDEX IF NOT EXISTS jobs_source ON jobs(source_path, size, mtime)",
    "CREATE INDEX IF NOT EXISTS jobs_content ON jobs(sha256, request_key)",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        data TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_job ON events(job_id, id)",
)

#: version -> statements that bring version-1 up to it (idempotent DDL).
MIGRATIONS: dict[int, Sequence[str]] = {1: _V1}

#: ``source_disposed`` values under which the source still sits where it was seen.
_SOURCE_IN_PLACE = ("kept",)

_MUTABLE = (
    "state",
    "sha256",
    "resume_state",
    "mvsep_status",
    "mvsep_hash",
    "nonce",
    "intent_at",
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


ChangeListener = Callable[[Job, str, str], None]
"""``(job after the change, event kind, reason)``."""


class _WallClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class Journal:
    """The persistent job journal. Open it once per daemon; close it (or use ``with``)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        on_change: ChangeListener | None = None,
        read_only: bool = False,
    ) -> None:
        """Open (create, migrate) and lock the journal at ``path``.

        ``on_change(job, kind, reason)`` is called after each committed change (outside the
        transaction), e.g. to log one line per state change. ``read_only`` opens an existing
        journal for reading without taking the lock (``status`` while the daemon runs); it
        never creates, migrates or writes.
        """
        self.path = Path(path)
        self.on_change = on_change
        self._pending: list[tuple[Job, str, str]] = []
        self._clock: Clock = clock if clock is not None else _WallClock()
        self._lock = threading.RLock()
        self._lock_file: IO[str] | None = None
        if read_only:
            self._open_read_only()
            self._closed = False
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _acquire_lock(self.path)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self._release()
            raise
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_read_only(self) -> None:
        if not self.path.exists():
            raise JournalError(f"journal {self.path} does not exist")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self._db.close()
            raise JournalVersionError(
                f"journal {self.path} has schema version {version}, but this mvsep-watch "
                f"understands up to version {SCHEMA_VERSION}: upgrade mvsep-watch"
            )

    def _release(self) -> None:
        if self._lock_file is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
        self._lock_file.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise JournalVersionError(
                f"journal {self.path} has schema version {current}, but this mvsep-watch "
                f"understands up to version {SCHEMA_VERSION}: upgrade mvsep-watch, or point "
                f"[journal] path at another file"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.transaction() as db:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {int(version)}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error), serialised across threads."""
        with self._lock:
            if getattr(self, "_closed", False):
                raise JournalError(f"journal {self.path} is closed")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: cannot begin: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                self._pending.clear()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                self._pending.clear()
                raise JournalError(f"journal {self.path}: commit failed: {exc}") from exc
            pending, self._pending = self._pending, []
        self._notify(pending)

    def _notify(self, pending: list[tuple[Job, str, str]]) -> None:
        listener = self.on_change
        if listener is None:
            return
        for job, kind, reason in pending:
            listener(job, kind, reason)

    def _read(self, sql: str, args: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._closed:
                raise JournalError(f"journal {self.path} is closed")
            return list(self._db.execute(sql, tuple(args)))

    # ------------------------------------------------------------ new jobs

    def is_known(self, path: Path, size: int, mtime: float) -> bool:
        """Whether this exact file (path, size, mtime) already has a job and is still in place."""
        return self._find_known(path, size, mtime) is not None

    def _find_known(self, path: Path, size: int, mtime: float) -> sqlite3.Row | None:
        rows = self._read(
            "SELECT * FROM jobs WHERE source_path = ? AND size = ? AND mtime = ?"
            " AND (source_disposed IS NULL OR source_disposed IN (?))"
            " ORDER BY id DESC LIMIT 1",
            (str(path), size, mtime, *_SOURCE_IN_PLACE),
        )
        return rows[0] if rows else None

    def record_seen(self, source: SourceFile, *, size: int, mtime: float) -> tuple[Job, bool]:
        """Journal a new job for ``source`` in ``ready``; ``(job, created)``.

        The same path with the same size and mtime, still in place, is the same job
        (``created`` is False): rescans never make duplicates.
        """
        now = self._clock.time()
        with self.transaction() as db:
            known = self._find_known(source.path, size, mtime)
            if known is not None:
                return _job_from_row(known), False
            cur = db.execute(
                "INSERT INTO jobs (source_path, size, mtime, inbox, preset, request_key,"
                " source_json, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    str(source.path),
                    size,
                    mtime,
                    source.inbox,
                    source.preset,
                    source.request.key(),
                    json.dumps(source.to_json(), sort_keys=True),
                    JobState.READY.value,
                    now,
                    now,
                ),
            )
            job_id = int(cur.lastrowid or 0)
            _insert_event(db, job_id, now, "seen", None, JobState.READY, str(source.path), None)
            job = self._get(db, job_id)
            self._pending.append((job, "seen", str(source.path)))
            return job, True

    # ------------------------------------------------------------ transitions

    def apply(self, job_id: int, event: Event, *, data: dict[str, Any] | None = None) -> Job:
        """Apply ``event`` to the job through ``transition()``; row + event in one commit."""
        now = self._clock.time()
        with self.transaction() as db:
            return self._apply_in(db, self._get(db, job_id), event, now, data)

    def _apply_in(
        self,
        db: sqlite3.Connection,
        job: Job,
        event: Event,
        now: float,
        data: dict[str, Any] | None,
    ) -> Job:
        new = transition(job, event, now=now)
        _write_job(db, new)
        _insert_event(db, job.id, now, event.kind, job.state, new.state, describe(event), data)
        self._pending.append((new, event.kind, describe(event)))
        return new

    def mark_prepared(self, job_id: int, sha256: str, estimated_credits: float | None) -> Job:
        return self.apply(job_id, Prepared(sha256, estimated_credits))

    def claim_next_ready(
        self, nonce_factory: Callable[[], str], *, exclude: Collection[int] = ()
    ) -> Job | None:
        """Move the oldest prepared ready job to ``submitting`` (the intent, before any POST).

        ``exclude``: job ids the caller is still busy with.
        """
        now = self._clock.time()
        skip = sorted(exclude)
        marks = ",".join("?" * len(skip))
        with self.transaction() as db:
            rows = list(
                db.execute(
                    "SELECT * FROM jobs WHERE state = ? AND sha256 IS NOT NULL"
                    f" AND cancel_requested IS NULL AND id NOT IN ({marks}) ORDER BY id LIMIT 1",
                    (JobState.READY.value, *skip),
                )
            )
            if not rows:
                return None
            job = _job_from_row(rows[0])
            return self._apply_in(db, job, SubmitIntent(nonce_factory()), now, None)

    def mark_submitting(self, job_id: int, nonce: str) -> Job:
        return self.apply(job_id, SubmitIntent(nonce))

    def mark_submitted(
        self,
        job_id: int,
        mvsep_hash: str,
        *,
        reconciled: bool = False,
        credits: float | None = None,
    ) -> Job:
        return self.apply(job_id, Submitted(mvsep_hash, reconciled, credits))

    def mark_reconciled_absent(self, job_id: int) -> Job:
        return self.apply(job_id, ReconciledAbsent())

    def mark_status(self, job_id: int, status: str, *, data: dict[str, Any] | None = None) -> Job:
        return self.apply(job_id, StatusSeen(status), data=data)

    def mark_result_ready(self, job_id: int, files: Sequence[ResultFile]) -> Job:
        return self.apply(job_id, ResultReady(tuple(files)))

    def mark_duplicate(
        self, job_id: int, *, of_job: int, files: Sequence[ResultFile], sha256: str
    ) -> Job:
        return self.apply(job_id, Duplicate(of_job, tuple(files), sha256))

    def mark_outputs_planned(self, job_id: int, paths: Sequence[Path]) -> Job:
        return self.apply(job_id, OutputsPlanned(tuple(str(p) for p in paths)))

    def mark_filed(self, job_id: int, outputs: Sequence[Path]) -> Job:
        return self.apply(job_id, Filed(tuple(str(p) for p in outputs)))

    def mark_deferred(
        self, job_id: int, *, due_at: float, error: str, resume: JobState | None = None
    ) -> Job:
        return self.apply(job_id, Deferred(due_at=due_at, error=error, resume=resume))

    def mark_resumed(self, job_id: int) -> Job:
        return self.apply(job_id, Resumed())

    def mark_expired(self, job_id: int, reason: str) -> Job:
        return self.apply(job_id, Expired(reason))

    def mark_cancelled(self, job_id: int, reason: str) -> Job:
        return self.apply(job_id, Cancelled(reason))

    def mark_cancel_declined(self, job_id: int, reason: str) -> Job:
        return self.apply(job_id, CancelDeclined(reason))

    def mark_failed(self, job_id: int, reason: str) -> Job:
        return self.apply(job_id, Failed(reason))

    def request_cancel(
        self,
        job_id: int,
        reason: str,
        *,
        processing: CancelProcessing,
        source_gone: bool = False,
    ) -> Job:
        """Cancel now if the state allows it, else remember the request (one transaction).

        ``source_gone``: the input was removed from the inbox (the watcher's cancel).
        """
        now = self._clock.time()
        with self.transaction() as db:
            job = self._get(db, job_id)
            event = cancel_event(job, reason, processing=processing)
            if event is not None:
                job = self._apply_in(db, job, event, now, None)
            if source_gone and job.source_disposed is None:
                job = self._dispose_in(db, job, "removed", now)
            return job

    def mark_source_disposed(self, job_id: int, how: str) -> Job:
        """Record what became of the input (``kept``, ``deleted``, ``archived:…``, ``failed:…``)."""
        now = self._clock.time()
        with self.transaction() as db:
            return self._dispose_in(db, self._get(db, job_id), how, now)

    def _dispose_in(self, db: sqlite3.Connection, job: Job, how: str, now: float) -> Job:
        new = dataclasses.replace(job, source_disposed=how, updated_at=now)
        _write_job(db, new)
        _insert_event(db, job.id, now, "source_disposed", job.state, job.state, how, None)
        self._pending.append((new, "source_disposed", how))
        return new

    # ------------------------------------------------------------ reads

    def _get(self, db: sqlite3.Connection, job_id: int) -> Job:
        rows = list(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)))
        if not rows:
            raise KeyError(f"no job {job_id} in journal {self.path}")
        return _job_from_row(rows[0])

    def get(self, job_id: int) -> Job:
        """The job with this id (``KeyError`` if there is none)."""
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise KeyError(f"no job {job_id} in journal {self.path}")
        return _job_from_row(rows[0])

    def jobs_in(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        rows = self._read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", wanted)
        return [_job_from_row(r) for r in rows]

    def active_jobs(self) -> list[Job]:
        """Every non-terminal job, oldest first (what a restart resumes)."""
        return self.jobs_in(ACTIVE_STATES)

    def active_for_path(self, path: Path) -> list[Job]:
        rows = self._read("SELECT * FROM jobs WHERE source_path = ? ORDER BY id", (str(path),))
        return [j for j in map(_job_from_row, rows) if not j.state.is_terminal]

    def undisposed(self) -> list[Job]:
        """Filed or failed jobs whose input was not dealt with yet (a cut-off disposal)."""
        rows = self._read(
            "SELECT * FROM jobs WHERE state IN (?, ?) AND source_disposed IS NULL ORDER BY id",
            (JobState.FILED.value, JobState.FAILED.value),
        )
        return [_job_from_row(r) for r in rows]

    def find_filed_duplicate(self, sha256: str, request_key: str, *, exclude_id: int) -> Job | None:
        """The newest filed job with the same content and request, excluding ``exclude_id``."""
        rows = self._read(
            "SELECT * FROM jobs WHERE sha256 = ? AND request_key = ? AND state = ? AND id != ?"
            " ORDER BY id DESC",
            (sha256, request_key, JobState.FILED.value, exclude_id),
        )
        return _job_from_row(rows[0]) if rows else None

    def slots_held(self) -> int:
        """Jobs that (may) occupy an MVSEP parallel slot."""
        return sum(1 for j in self.jobs_in(ACTIVE_STATES) if j.holds_slot)

    def counts_by_state(self) -> dict[str, int]:
        rows = self._read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        counts = {s.value: 0 for s in JobState}
        counts.update({str(r["state"]): int(r["n"]) for r in rows})
        return counts

    def recent_jobs(self, limit: int = 20) -> list[Job]:
        rows = self._read("SELECT * FROM jobs ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,))
        return [_job_from_row(r) for r in rows]

    def events(self, job_id: int | None = None, *, limit: int = 1000) -> list[EventRow]:
        """Events oldest first (of one job, or the ``limit`` most recent of all)."""
        if job_id is not None:
            rows = self._read(
                "SELECT * FROM events WHERE job_id = ? ORDER BY id LIMIT ?", (job_id, limit)
            )
        else:
            rows = self._read(
                "SELECT * FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?) ORDER BY id",
                (limit,),
            )
        return [_event_from_row(r) for r in rows]


# ---------------------------------------------------------------- helpers


def _acquire_lock(path: Path) -> IO[str]:
    lock_path = path.with_name(path.name + ".lock")
    fh = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise JournalLockedError(
            f"journal {path} is in use by another mvsep-watch (pid {holder}; lock file "
            f"{lock_path}): stop it first, or use another [journal] path"
        ) from exc
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _insert_event(
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


def _write_job(db: sqlite3.Connection, job: Job) -> None:
    values = {
        "state": job.state.value,
        "sha256": job.sha256,
        "resume_state": None if job.resume_state is None else job.resume_state.value,
        "mvsep_status": job.mvsep_status,
        "mvsep_hash": job.mvsep_hash,
        "nonce": job.nonce,
        "intent_at": job.intent_at,
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


def _job_from_row(row: sqlite3.Row) -> Job:
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


def _event_from_row(row: sqlite3.Row) -> EventRow:
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
