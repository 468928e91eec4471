"""What the pages show, read from the running daemon and its journal.

The status data is :func:`daemon.status.collect`'s, the very dict of ``status --json``; the
page adds the jobs in flight, the failures and the recent results (through
:func:`daemon.status.summaries`, as ``jobs list`` does) and the credits left, which only
MVSEP knows: :class:`AccountCache` reads the account in the background at most every
``ACCOUNT_TTL_S``, so no page waits for MVSEP and an outage only makes the figure older.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from daemon.errors import JournalError
from daemon.http import health
from daemon.jobs import JobState
from daemon.journal import ACCOUNT_NOTE, Journal
from daemon.status import collect, summaries, utc_text

if TYPE_CHECKING:
    from daemon.service import Daemon

log = structlog.get_logger(__name__)

ACCOUNT_TTL_S = 300.0
"""How old the credits-left figure may get before the account is read again."""
PAGE_LIMIT = 20
PROBE_NOTE = "http_ready_probe"
"""The note ``/readyz`` writes to prove the journal takes writes."""
_IN_FLIGHT = [s.value for s in JobState if not s.is_terminal]


class AccountCache:
    """The account's credits left, read off the request thread."""

    def __init__(self, read: Callable[[], float], *, ttl_s: float = ACCOUNT_TTL_S) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: float | None = None
        self._at: float | None = None  # time.time() of the value
        self._reading = False

    def get(self) -> tuple[float | None, str]:
        """The last figure and a note saying how old it is; starts a read when stale."""
        with self._lock:
            stale = self._at is None or time.time() - self._at > self._ttl_s
            if stale and not self._reading:
                self._reading = True
                threading.Thread(target=self._refresh, name="http-account", daemon=True).start()
            if self._at is None:
                return None, "reading the account..."
            return self._value, f"as of {utc_text(self._at)}"

    def _refresh(self) -> None:
        try:
            value = self._read()
        except Exception as exc:  # MVSEP down, token refused: the older figure stays
            log.info("status page: account not read", error=str(exc))
            value = None
        with self._lock:
            self._reading = False
            if value is not None:
                self._value, self._at = value, time.time()


def status_data(daemon: Daemon) -> dict[str, Any]:
    """``mvsep-watch status --json``'s dict, from this daemon's journal."""
    return collect(daemon.settings, limit=PAGE_LIMIT)


def page_data(daemon: Daemon, account: AccountCache, request_id: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status_data(daemon), "now": utc_text(time.time())}
    with Journal(daemon.settings.journal.path, read_only=True) as journal:
        data["in_flight"] = summaries(journal, journal.find_jobs(states=_IN_FLIGHT, limit=100))
        data["failed"] = summaries(journal, journal.find_jobs(states=["failed"], limit=50))
        data["filed"] = summaries(journal, journal.find_jobs(states=["filed"], limit=PAGE_LIMIT))
        found = journal.requests([request_id]) if request_id is not None else []
    data["request"] = None
    if found:
        row = found[0]
        data["request"] = {
            "action": row.action,
            "job_id": row.job_id,
            "state": row.state,
            "result": row.result,
        }
    data["credits_left"], data["credits_left_note"] = account.get()
    return data


def loops(daemon: Daemon) -> dict[str, float | None]:
    engine, watcher = daemon.engine, daemon.watcher
    return {
        "engine": engine.last_tick if engine is not None else None,
        "watcher": watcher.last_tick if watcher is not None else None,
    }


def _probe(journal: Journal | None) -> Callable[[], None]:
    def write() -> None:
        if journal is None or journal.closed:
            raise RuntimeError("the journal is not open")
        journal.set_note(PROBE_NOTE, utc_text(time.time()))

    return write


def readiness(daemon: Daemon, now: float, *, started_at: float) -> tuple[int, dict[str, Any]]:
    """``/readyz``: see :mod:`daemon.http.health`. ``now`` is ``time.monotonic()``."""
    journal, watcher = daemon.journal, daemon.watcher
    inboxes = [ib.display_name for ib in daemon.settings.inbox]
    paused = watcher.paused() if watcher is not None else []
    scans = watcher.last_scans() if watcher is not None else {}
    pause: tuple[str, float] | None = None
    checks = [health.journal_check(_probe(journal))]
    if journal is not None and not journal.closed:
        with contextlib.suppress(JournalError, sqlite3.Error):  # the journal check says why
            pause = journal.note(ACCOUNT_NOTE)
    running = watcher is not None and watcher.last_tick is not None
    checks += [
        health.watches_check(inboxes, paused, running=running),
        health.rescan_check(
            scans,
            paused,
            now,
            started_at=started_at,
            interval_s=daemon.settings.watch.rescan_interval_s,
        ),
        health.account_check(pause, time.time()),
    ]
    return health.document(checks, description="mvsep-watch: ready to take and file work")
