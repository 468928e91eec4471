"""The SQLite job journal: the single source of truth of every job, crash-safe.

One file (WAL, ``synchronous=FULL``), one connection shared by the engine's threads behind a
lock, one :meth:`Journal.transaction` (``BEGIN IMMEDIATE``). Every state change reads the
row, applies the PURE :func:`daemon.jobs.transition` and writes the row AND an event row in
one committed transaction, before the caller performs the action it records.

A second daemon on the same journal is refused: the journal holds an exclusive ``flock`` on
``<journal>.lock`` (with the holder's pid written in it) and, on Linux, a lock that deleting
files cannot defeat, for its whole lifetime (``daemon.journal.guard``). The journal deleted
or replaced while open is noticed by :meth:`Journal.check_intact` (and before every write):
:class:`~daemon.errors.JournalGoneError`. A journal written by a newer schema is refused
with :class:`~daemon.errors.JournalVersionError`.
The API token is never stored; the MVSEP host each job was created on is (``base_url``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from daemon.errors import JournalError, JournalGoneError
from daemon.jobs import (
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
    PollFailed,
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
    transition,
)
from daemon.journal.control import JournalControl
from daemon.journal.guard import JournalGuard
from daemon.journal.queries import JournalReads
from daemon.journal.rows import insert_event, job_from_row, write_job
from daemon.journal.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    check_version,
    create_whole,
    user_version,
)

ACCOUNT_NOTE = "account_pause"
"""The note saying why every submit is paused (MVSEP refused the account); `status` shows it."""
NOTES_DDL = "CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, text TEXT NOT NULL, at REAL)"

ChangeListener = Callable[[Job, str, str], None]
"""``(job after the change, event kind, reason)``."""
StagedListener = Callable[[sqlite3.Connection, Sequence[tuple[Job, str, str]]], None]
"""``(db, changes)`` inside the transaction, just before COMMIT (the notification outbox)."""
NoteListener = Callable[[sqlite3.Connection, str, str | None], None]
"""``(db, key, new text)`` inside :meth:`Journal.set_note`'s transaction, before the write."""


class _WallClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class Journal(JournalControl, JournalReads):
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
        self.before_commit: StagedListener | None = None
        self.on_note: NoteListener | None = None
        self._pending: list[tuple[Job, str, str]] = []
        self._clock: Clock = clock if clock is not None else _WallClock()
        self._lock = threading.RLock()
        self._guard: JournalGuard | None = None
        self._gone: JournalGoneError | None = None
        if read_only:
            self._open_read_only()
            self._closed = False
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._guard = JournalGuard(self.path)
        try:
            create_whole(self.path)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._guard.opened()
        except BaseException:
            self._release()
            raise
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: nothing can be read or written any more."""
        return self._closed

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
        try:
            check_version(self.path, user_version(self._db), fix="upgrade mvsep-watch")
        except BaseException:
            self._db.close()
            raise

    def _release(self) -> None:
        if self._guard is not None:
            self._guard.release()

    def check_intact(self) -> None:
        """Raise :class:`~daemon.errors.JournalGoneError` if this journal's file or its lock
        file was deleted or replaced since it was opened (then every later write refuses
        too). The engine and the service call it periodically; it costs two ``stat``."""
        if self._gone is not None:
            raise self._gone
        if self._guard is None or getattr(self, "_closed", True):
            return
        try:
            self._guard.check()
        except JournalGoneError as exc:
            self._gone = exc
            raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return user_version(self._db)

    def _migrate(self) -> None:
        current = user_version(self._db)
        check_version(
            self.path,
            current,
            fix="upgrade mvsep-watch, or point [journal] path at another file",
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
            self.check_intact()
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
                if self.before_commit is not None and self._pending:
                    self.before_commit(self._db, list(self._pending))
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

    def record_seen(self, source: SourceFile, *, size: int, mtime: float) -> tuple[Job, bool]:
        """Journal a new job for ``source`` in ``ready``; ``(job, created)``.

        The same path with the same size and mtime, still in place, is the same job
        (``created`` is False): rescans never make duplicates.
        """
        now = self._clock.time()
        with self.transaction() as db:
            known = self._find_known(source.path, size, mtime)
            if known is not None:
                return job_from_row(known), False
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
            insert_event(db, job_id, now, "seen", None, JobState.READY, str(source.path), None)
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
        write_job(db, new)
        insert_event(db, job.id, now, event.kind, job.state, new.state, describe(event), data)
        self._pending.append((new, event.kind, describe(event)))
        return new

    def mark_prepared(self, job_id: int, sha256: str, estimated_credits: float | None) -> Job:
        return self.apply(job_id, Prepared(sha256, estimated_credits))

    def claim_next_ready(
        self,
        nonce_factory: Callable[[], str],
        *,
        exclude: Collection[int] = (),
        base_url: str | None = None,
    ) -> Job | None:
        """Move the oldest prepared ready job to ``submitting`` (the intent, before any POST).

        ``exclude``: job ids the caller is still busy with. ``base_url``: the MVSEP host the
        create will go to; the job keeps it for every later call.
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
            job = job_from_row(rows[0])
            return self._apply_in(db, job, SubmitIntent(nonce_factory(), base_url), now, None)

    def mark_submitting(self, job_id: int, nonce: str, *, base_url: str | None = None) -> Job:
        return self.apply(job_id, SubmitIntent(nonce, base_url))

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

    def mark_poll_failed(self, job_id: int, *, due_at: float, error: str) -> Job:
        """A poll failed; the job stays queued, polled again at ``due_at`` (wall clock)."""
        return self.apply(job_id, PollFailed(error=error, due_at=due_at))

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
        self,
        job_id: int,
        *,
        due_at: float,
        error: str,
        resume: JobState | None = None,
        recheck: bool = False,
    ) -> Job:
        return self.apply(job_id, Deferred(due_at, error, resume, recheck))

    def mark_resumed(self, job_id: int) -> Job:
        return self.apply(job_id, Resumed())

    def resume_if_waiting(self, job_id: int) -> Job | None:
        """Resume a ``retry_wait`` job whose time came, if it is still waiting (one
        transaction); None if a cancel (the watcher's thread) got there first."""
        now = self._clock.time()
        with self.transaction() as db:
            job = self._get(db, job_id)
            if job.state is not JobState.RETRY_WAIT:
                return None
            return self._apply_in(db, job, Resumed(), now, None)

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

    def mark_dispose_error(
        self, job_id: int, error: str, *, last_error: str, data: dict[str, Any]
    ) -> Job:
        """A disposal (archive, delete, failed folder) that failed: event ``dispose_error``
        with ``data`` (attempt, due time), ``last_error`` shown by ``status``; no state change."""
        now = self._clock.time()
        with self.transaction() as db:
            job = self._get(db, job_id)
            new = dataclasses.replace(job, last_error=last_error, updated_at=now)
            write_job(db, new)
            insert_event(db, job.id, now, "dispose_error", job.state, job.state, error, data)
            return new

    def mark_credits(self, job_id: int, credits: float) -> Job:
        """What the job cost at MVSEP (the history's ``credits``); event ``credits``."""
        now = self._clock.time()
        with self.transaction() as db:
            job = self._get(db, job_id)
            new = dataclasses.replace(job, used_credits=credits, updated_at=now)
            write_job(db, new)
            insert_event(db, job.id, now, "credits", job.state, job.state, "", {"credits": credits})
            return new

    def set_note(self, key: str, text: str | None) -> None:
        """A daemon-wide note, not a job's (``ACCOUNT_NOTE``: why submits are paused, for
        ``status``); None removes it. Its table is made on first use (no schema change)."""
        with self.transaction() as db:
            db.execute(NOTES_DDL)
            if self.on_note is not None:
                self.on_note(db, key, text)
            db.execute("DELETE FROM notes WHERE key = ?", (key,))
            if text is not None:
                db.execute("INSERT INTO notes VALUES (?, ?, ?)", (key, text, self._clock.time()))

    def note(self, key: str) -> tuple[str, float] | None:
        """A note's text and when it was written (wall clock), or None."""
        try:
            rows = self._read("SELECT text, at FROM notes WHERE key = ?", (key,))
        except sqlite3.OperationalError:  # no note was ever written: no table
            return None
        return (str(rows[0]["text"]), float(rows[0]["at"])) if rows else None

    def _dispose_in(self, db: sqlite3.Connection, job: Job, how: str, now: float) -> Job:
        new = dataclasses.replace(job, source_disposed=how, updated_at=now)
        write_job(db, new)
        insert_event(db, job.id, now, "source_disposed", job.state, job.state, how, None)
        self._pending.append((new, "source_disposed", how))
        return new

    # ------------------------------------------------------------ reads
