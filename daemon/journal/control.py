"""What the commands share with the running daemon through the journal (schema v3).

* requests: ``jobs retry/cancel/forget`` write a row (:func:`post_request`, a plain SQLite
  connection that inserts into ``requests`` only: the daemon holds the journal's lock); the
  daemon's engine carries it out (``daemon.engine.requests``) with the verbs of
  :class:`JournalControl` and writes the outcome back (:meth:`JournalControl.finish_request`);
  the command reads it with :func:`request_outcomes`.
* progress: each active job's latest progress, one row per job (``status`` reads them all
  in one query).
* notes by prefix: each inbox's watch mode (``inbox:NAME``).

:func:`daemon_pid` tells whether a daemon holds the journal now (its lock), without taking it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.errors import IllegalTransition, JournalError
from daemon.jobs import Clock, Job, JobState, ResultFile
from daemon.journal.guard import lock_path_of
from daemon.journal.rows import insert_event, write_job
from daemon.journal.schema import user_version

REQUEST_ACTIONS = ("retry", "cancel", "forget")
PENDING, DONE, REFUSED = "pending", "done", "refused"
INBOX_NOTE = "inbox:"
"""Prefix of the note of each inbox's watch mode and pause (``inbox:NAME``: JSON)."""
_CONTROL_VERSION = 3


@dataclass(frozen=True)
class RequestRow:
    """One request of a command to the daemon, and what became of it."""

    id: int
    at: float
    action: str
    job_id: int
    state: str
    result: str | None
    done_at: float | None


def _request_from_row(row: sqlite3.Row) -> RequestRow:
    return RequestRow(
        id=int(row["id"]),
        at=float(row["at"]),
        action=str(row["action"]),
        job_id=int(row["job_id"]),
        state=str(row["state"]),
        result=row["result"],
        done_at=row["done_at"],
    )


def retried(job: Job, *, to: JobState, files: tuple[ResultFile, ...], now: float) -> Job:
    """PURE: a failed job made to start again in ``to``.

    ``ready``: from the beginning (prepared again, a new create: nothing of the earlier
    submission is kept). ``downloading`` (``files``: the result MVSEP still has) or
    ``queued`` (MVSEP still works on it): on from there with the same hash, nothing paid
    twice. The input is back in its inbox (``source_disposed`` cleared)."""
    if job.state is not JobState.FAILED:
        raise IllegalTransition(f"job {job.id}: only a failed job can be retried ({job.state})")
    fresh: dict[str, Any] = {
        "attempts": 0,
        "first_error_at": None,
        "next_attempt_at": None,
        "last_error": None,
        "resume_state": None,
        "cancel_requested": None,
        "planned_outputs": None,
        "outputs": (),
        "source_disposed": None,
        "updated_at": now,
    }
    if to is JobState.READY:
        fresh.update(sha256=None, mvsep_status=None, mvsep_hash=None, nonce=None,
                     intent_at=None, base_url=None, duplicate_of=None, used_credits=None,
                     estimated_credits=None, result_files=())  # fmt: skip
    elif to is JobState.DOWNLOADING:
        if not files or job.mvsep_hash is None:
            raise IllegalTransition(f"job {job.id}: no result to download")
        fresh.update(result_files=files, mvsep_status="done")
    elif to is JobState.QUEUED:
        if job.mvsep_hash is None:
            raise IllegalTransition(f"job {job.id}: nothing at MVSEP to wait for")
        fresh.update(result_files=(), mvsep_status=None)
    else:
        raise IllegalTransition(f"job {job.id}: a retry cannot go to {to}")
    return dataclasses.replace(job, state=to, **fresh)


class JournalControl:
    """The verbs the daemon uses for requests and progress; mixed into ``Journal``."""

    path: Path
    _clock: Clock
    _pending: list[tuple[Job, str, str]]

    if TYPE_CHECKING:  # given by Journal and JournalReads (no stubs here: they come first)

        def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

        def _read(self, sql: str, args: Iterable[object] = ()) -> list[sqlite3.Row]: ...

        def _get(self, db: sqlite3.Connection, job_id: int) -> Job: ...

    # ------------------------------------------------------------ requests

    def pending_requests(self) -> list[RequestRow]:
        rows = self._read("SELECT * FROM requests WHERE state = ? ORDER BY id", (PENDING,))
        return [_request_from_row(r) for r in rows]

    def requests(self, ids: Iterable[int]) -> list[RequestRow]:
        wanted = sorted(set(ids))
        marks = ",".join("?" * len(wanted))
        rows = self._read(f"SELECT * FROM requests WHERE id IN ({marks}) ORDER BY id", wanted)
        return [_request_from_row(r) for r in rows]

    def add_request(self, action: str, job_id: int) -> int:
        """A request written by the daemon's own process (tests; a command uses
        :func:`post_request`)."""
        with self.transaction() as db:
            return _insert_request(db, action, job_id, self._clock.time())

    def finish_request(self, request_id: int, *, ok: bool, result: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE requests SET state = ?, result = ?, done_at = ? WHERE id = ?",
                (DONE if ok else REFUSED, result, self._clock.time(), request_id),
            )

    # ------------------------------------------------------------ the verbs

    def retry_failed(
        self,
        job_id: int,
        *,
        to: JobState,
        files: tuple[ResultFile, ...] = (),
        restore: Callable[[Job], Path],
        reason: str,
    ) -> Job:
        """Start the failed job again in ``to`` (see :func:`retried`): in one transaction,
        ``restore(job)`` puts its input back at its inbox path (or raises: nothing
        changes), and the row takes that file's size and mtime, so the watcher, seeing it
        appear, finds this job and makes no second one."""
        now = self._clock.time()
        with self.transaction() as db:
            job = self._get(db, job_id)
            new = retried(job, to=to, files=files, now=now)
            st = restore(job).stat()
            new = dataclasses.replace(new, size=st.st_size, mtime=st.st_mtime)
            write_job(db, new)
            db.execute(
                "UPDATE jobs SET size = ?, mtime = ? WHERE id = ?", (new.size, new.mtime, job_id)
            )
            insert_event(db, job_id, now, "retried", job.state, new.state, reason, None)
            db.execute("DELETE FROM progress WHERE job_id = ?", (job_id,))
            self._pending.append((new, "retried", reason))
            return new

    def forget_job(self, job_id: int) -> Job:
        """Delete a finished job and its events (``KeyError``: no such job). An unfinished
        job, or one another job was filed from, is refused (``IllegalTransition``)."""
        with self.transaction() as db:
            job = self._get(db, job_id)
            if not job.state.is_terminal:
                raise IllegalTransition(f"job {job_id} is {job.state}: cancel it first")
            users = [int(r[0]) for r in db.execute(
                "SELECT id FROM jobs WHERE duplicate_of = ? ORDER BY id", (job_id,))]  # fmt: skip
            if users:
                raise IllegalTransition(
                    f"job {users[0]} was filed from job {job_id}'s result: forget it first"
                )
            db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM progress WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return job

    # ------------------------------------------------------------ progress and notes

    def set_progress_many(self, changes: Mapping[int, dict[str, Any] | None]) -> None:
        """Each job's latest progress (None: none any more), in one transaction. A job
        forgotten meanwhile gets no row."""
        now = self._clock.time()
        with self.transaction() as db:
            for job_id, data in changes.items():
                if data is None:
                    db.execute("DELETE FROM progress WHERE job_id = ?", (job_id,))
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO progress (job_id, data, at)"
                    " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)",
                    (job_id, json.dumps(data, sort_keys=True), now, job_id),
                )

    def progress_all(self) -> dict[int, dict[str, Any]]:
        """Every job's latest progress (one query)."""
        try:
            rows = self._read("SELECT job_id, data FROM progress")
        except sqlite3.OperationalError:  # a journal older than v3, opened read-only
            return {}
        return {int(r["job_id"]): json.loads(r["data"]) for r in rows}

    def notes_with(self, prefix: str) -> dict[str, tuple[str, float]]:
        """The notes whose key starts with ``prefix`` (key without it → text, when)."""
        try:
            rows = self._read(
                "SELECT key, text, at FROM notes WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            )
        except sqlite3.OperationalError:  # no note was ever written: no table
            return {}
        return {str(r["key"])[len(prefix) :]: (str(r["text"]), float(r["at"] or 0)) for r in rows}


def _insert_request(db: sqlite3.Connection, action: str, job_id: int, now: float) -> int:
    if action not in REQUEST_ACTIONS:
        raise ValueError(f"unknown request {action!r}")
    cur = db.execute(
        "INSERT INTO requests (at, action, job_id) VALUES (?, ?, ?)", (now, action, job_id)
    )
    return int(cur.lastrowid or 0)


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.exists():
        raise JournalError(f"journal {path} does not exist: the daemon has not run yet")
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        version = user_version(db)
        if version < _CONTROL_VERSION:
            raise JournalError(
                f"journal {path} has schema version {version}: start the daemon of this "
                "mvsep-watch once (it upgrades the journal), then ask again"
            )
        yield db
    finally:
        db.close()


def post_request(path: Path, action: str, job_ids: Iterable[int]) -> list[int]:
    """Write one request per job for the daemon (one transaction); their ids.

    Not a second writer of jobs: only ``requests`` rows are written, which the daemon
    carries out; SQLite's own locking orders this insert with the daemon's writes."""
    with _connect(path) as db:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [_insert_request(db, action, job_id, now) for job_id in job_ids]
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return ids


def request_outcomes(path: Path, ids: Iterable[int]) -> list[RequestRow]:
    wanted = sorted(set(ids))
    marks = ",".join("?" * len(wanted))
    with _connect(path) as db:
        rows = db.execute(f"SELECT * FROM requests WHERE id IN ({marks}) ORDER BY id", wanted)
        return [_request_from_row(r) for r in rows]


def daemon_pid(path: Path) -> str | None:
    """The pid of the daemon holding the journal at ``path`` now, else None (the lock is
    tried and let go at once: nothing is taken)."""
    try:
        fd = open(lock_path_of(path), encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with fd:
        try:
            fcntl.flock(fd.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return fd.read().strip() or "unknown"
        fcntl.flock(fd.fileno(), fcntl.LOCK_UN)
        return None
