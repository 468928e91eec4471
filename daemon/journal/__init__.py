"""The SQLite job journal: the single source of truth of every job, crash-safe.

* :mod:`~daemon.journal.store`: :class:`Journal`, the connection, lock, ``transaction()``
  and the write verbs (``record_seen``, ``claim_next_ready``, ``mark_*``);
* :mod:`~daemon.journal.queries`: the reads (job queries, events, counts), which are also
  all a read-only ``status`` view needs;
* :mod:`~daemon.journal.schema`: DDL, ``PRAGMA user_version`` migrations;
* :mod:`~daemon.journal.guard`: the locks (lock file, and on Linux one that deleting files
  cannot defeat) and the check that the journal is still in place (``check_intact``);
* :mod:`~daemon.journal.rows`: rows <-> :class:`~daemon.jobs.Job` and :class:`EventRow`;
* :mod:`~daemon.journal.control`: what the commands share with the running daemon (schema
  v3): request rows (``jobs retry/cancel/forget``), each job's progress, notes by prefix.
"""

from daemon.journal.control import (
    INBOX_NOTE,
    RequestRow,
    daemon_pid,
    post_request,
    request_outcomes,
)
from daemon.journal.rows import EventRow
from daemon.journal.schema import MIGRATIONS, SCHEMA_VERSION
from daemon.journal.store import ACCOUNT_NOTE, ChangeListener, Journal

__all__ = [
    "ACCOUNT_NOTE",
    "INBOX_NOTE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ChangeListener",
    "EventRow",
    "Journal",
    "RequestRow",
    "daemon_pid",
    "post_request",
    "request_outcomes",
]
