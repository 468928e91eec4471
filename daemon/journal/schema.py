"""The journal's file: schema (DDL + ``PRAGMA user_version`` migrations).

A journal written by a newer schema is refused by :func:`check_version`. One daemon per
journal: the locks are in ``daemon.journal.guard``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from daemon.errors import JournalVersionError

SCHEMA_VERSION = 5

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

# v2: the MVSEP host each job was created on (regions: a job's files are served only by the
# region that created it). NULL for jobs journaled before: they use the configured host.
_V2 = ("ALTER TABLE jobs ADD COLUMN base_url TEXT",)

# v3: what the commands and `status` share with the running daemon. ``requests``: a row
# per `jobs retry/cancel/forget`, written by the command (the daemon holds the lock), carried
# out by the daemon (engine/requests.py), which writes ``state`` and ``result`` back.
# ``progress``: each active job's latest progress (queue position, chunks, transfer bytes),
# written at most about once a second. ``notes``: daemon-wide notes (the account pause, each
# inbox's watch mode), made on first use before v3.
_V3 = (
    "CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, text TEXT NOT NULL, at REAL)",
    """CREATE TABLE IF NOT EXISTS requests (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        action TEXT NOT NULL,
        job_id INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        result TEXT,
        done_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS requests_state ON requests(state, id)",
    """CREATE TABLE IF NOT EXISTS progress (
        job_id INTEGER PRIMARY KEY,
        data TEXT NOT NULL,
        at REAL NOT NULL
    )""",
)

# v4: the notification outbox (daemon/notify/outbox.py). One row per delivery: a hook run
# (``channel`` 'hook', ``target`` the hook's name) or a notification to one URL (``channel``
# 'notify', ``target`` the URL's id: a digest, never the URL, which may hold a secret).
# Written in the transaction of the change it reports; ``state`` 'waiting' until it is sent
# ('sent') or given up ('given_up'); ``attempts``, ``next_at``, ``last_error`` for the
# backoff and for `status`. ``key`` makes a delivery unique (the daily summary of a day).
_V4 = (
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        topic TEXT NOT NULL,
        target TEXT NOT NULL,
        key TEXT UNIQUE,
        job_id INTEGER,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        last_error TEXT,
        last_error_at REAL,
        state TEXT NOT NULL DEFAULT 'waiting',
        done_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, channel, next_at)",
)

#: version -> statements that bring version-1 up to it (run once each, in one transaction).
# v5: indexes for what `status` and the daemon ask of a big journal (100,000 jobs): the most
# recent jobs, jobs per inbox and state, credits since a time.
_V5 = (
    "CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated_at, id)",
    "CREATE INDEX IF NOT EXISTS jobs_inbox_state ON jobs(inbox, state)",
    "CREATE INDEX IF NOT EXISTS jobs_intent ON jobs(intent_at)",
)

MIGRATIONS: dict[int, Sequence[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5}


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_version(path: Path, version: int, *, fix: str) -> None:
    """Refuse a journal written by a newer mvsep-watch; ``fix`` ends the message."""
    if version > SCHEMA_VERSION:
        raise JournalVersionError(
            f"journal {path} has schema version {version}, but this mvsep-watch "
            f"understands up to version {SCHEMA_VERSION}: {fix}"
        )


def create_whole(path: Path) -> None:
    """Make a new journal beside ``path`` (schema, WAL mode, version), then rename it into
    place: a reader (``status``, a test watching a starting daemon) never sees a journal
    file without its tables. Nothing to do if ``path`` exists (the caller holds the lock)."""
    if path.exists():
        return
    new = path.with_name(f".{path.name}.new-{os.getpid()}")
    new.unlink(missing_ok=True)
    db = sqlite3.connect(new, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # kept in the file
        db.execute("PRAGMA synchronous=FULL")
        for version in range(1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[version]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {int(version)}")
            db.execute("COMMIT")
    except BaseException:
        db.close()
        new.unlink(missing_ok=True)
        raise
    db.close()  # the last connection: its WAL is checkpointed into the file and removed
    os.replace(new, path)
