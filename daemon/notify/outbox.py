"""The notification outbox: the ``outbox`` table of the journal (schema v4).

A delivery (one hook run, or one notification to one URL) is a row, written in the same
transaction as the job change it reports (:meth:`Outbox.add` takes that transaction's
connection), so a crash can never lose it: it is sent after the restart. A row is marked
``sent`` only after the send returned, so a crash between the send and that mark sends it
once more, never less. A failed send waits ``backoff_s(attempts)`` (capped exponential) and is
tried again; one still failing ``give_up_after_s`` after it was written is ``given_up`` (a
WARNING, and `status` shows it).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import structlog

from daemon.clock import Clock
from daemon.journal import Journal

log = structlog.get_logger(__name__)

HOOK = "hook"
NOTIFY = "notify"
RETRY_BASE_S = 30.0
RETRY_CAP_S = 3600.0
GIVE_UP_AFTER_S = 3 * 86400.0
"""A notification not delivered in three days is given up (the receiver is gone for good)."""


class DeliveryError(Exception):
    """A send that did not go through; its text is the row's ``last_error``."""


class GiveUp(DeliveryError):
    """A send that can never go through (its URL left the config): given up at once."""


def backoff_s(attempts: int, *, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """PURE: the wait after the ``attempts``-th failed send: base, doubling, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    id: int
    channel: str
    topic: str
    target: str
    job_id: int | None
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_at: float
    last_error: str | None
    state: str


def _row(r: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=int(r["id"]),
        channel=str(r["channel"]),
        topic=str(r["topic"]),
        target=str(r["target"]),
        job_id=None if r["job_id"] is None else int(r["job_id"]),
        payload=json.loads(r["payload"]),
        created_at=float(r["created_at"]),
        attempts=int(r["attempts"]),
        next_at=float(r["next_at"]),
        last_error=r["last_error"],
        state=str(r["state"]),
    )


class Outbox:
    """The outbox rows of one journal, with the clock that stamps them (``ManualClock`` in
    the tests)."""

    def __init__(
        self,
        journal: Journal,
        *,
        clock: Clock,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
        give_up_after_s: float = GIVE_UP_AFTER_S,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self._base_s = retry_base_s
        self._cap_s = retry_cap_s
        self._give_up_s = give_up_after_s

    @staticmethod
    def add(
        db: sqlite3.Connection,
        *,
        channel: str,
        topic: str,
        target: str,
        payload: dict[str, Any],
        now: float,
        job_id: int | None = None,
        key: str | None = None,
    ) -> bool:
        """Write a waiting row in the caller's transaction; False if ``key`` is taken."""
        cur = db.execute(
            "INSERT OR IGNORE INTO outbox (channel, topic, target, key, job_id, payload,"
            " created_at, next_at) VALUES (?,?,?,?,?,?,?,?)",
            (channel, topic, target, key, job_id, json.dumps(payload, sort_keys=True), now, now),
        )
        return cur.rowcount > 0

    def enqueue(self, **row: Any) -> bool:
        """:meth:`add` in a transaction of its own (the daily summary)."""
        with self.journal.transaction() as db:
            return self.add(db, now=self.clock.time(), **row)

    def due(self, channel: str, *, limit: int = 20) -> list[OutboxRow]:
        """The waiting rows of ``channel`` whose time has come, oldest first."""
        with self.journal.transaction() as db:
            rows = db.execute(
                "SELECT * FROM outbox WHERE state = 'waiting' AND channel = ? AND next_at <= ?"
                " ORDER BY next_at, id LIMIT ?",
                (channel, self.clock.time(), limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def next_due_in(self, channel: str) -> float | None:
        """Seconds until the next waiting row of ``channel`` is due (0 if one is), or None."""
        with self.journal.transaction() as db:
            row = db.execute(
                "SELECT MIN(next_at) AS at FROM outbox WHERE state = 'waiting' AND channel = ?",
                (channel,),
            ).fetchone()
        if row is None or row["at"] is None:
            return None
        return max(0.0, float(row["at"]) - self.clock.time())

    def retry_now(self) -> int:
        """Make every waiting row due now (a start: the receiver may be back); how many."""
        now = self.clock.time()
        with self.journal.transaction() as db:
            cur = db.execute(
                "UPDATE outbox SET next_at = ? WHERE state = 'waiting' AND next_at > ?", (now, now)
            )
        return cur.rowcount

    def mark_sent(self, row: OutboxRow, *, error: str | None = None) -> None:
        """Delivered (a hook: run, ``error`` its failure if it failed: hooks are run once)."""
        now = self.clock.time()
        with self.journal.transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?,"
                " last_error = COALESCE(?, last_error),"
                " last_error_at = CASE WHEN ? IS NULL THEN last_error_at ELSE ? END"
                " WHERE id = ?",
                (now, error, error, now, row.id),
            )

    def mark_failed(self, row: OutboxRow, error: str, *, give_up: bool = False) -> float | None:
        """A failed send: waits its backoff (returns the wall-clock time it is due again),
        or is given up (None): at ``give_up_after_s`` after it was written, or at once."""
        now = self.clock.time()
        attempts = row.attempts + 1
        next_at = now + backoff_s(attempts, base_s=self._base_s, cap_s=self._cap_s)
        if give_up or next_at - row.created_at > self._give_up_s:
            state, done_at = "given_up", now
        else:
            state, done_at = "waiting", None
        with self.journal.transaction() as db:
            db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_at = ?, last_error = ?,"
                " last_error_at = ?, done_at = ? WHERE id = ?",
                (state, attempts, next_at, error, now, done_at, row.id),
            )
        return None if state == "given_up" else next_at

    def deliver_due(self, channel: str, send: Callable[[OutboxRow], str | None]) -> int:
        """Send every due row of ``channel`` with ``send`` (which returns a hook's failure
        text, or None; or raises :class:`DeliveryError`); each outcome journaled after its
        send. Returns how many rows were tried."""
        rows = self.due(channel)
        for row in rows:
            fields = {"outbox_id": row.id, "topic": row.topic, "attempt": row.attempts + 1}
            if row.job_id is not None:
                fields |= {"job_id": row.job_id, "file": row.payload.get("file")}
            try:
                failure = send(row)
            except DeliveryError as exc:
                again = self.mark_failed(row, str(exc), give_up=isinstance(exc, GiveUp))
                if again is None:
                    log.warning("notification given up", error=str(exc), **fields)
                else:
                    wait_s = round(again - self.clock.time(), 1)
                    log.warning("notification not sent; tried again later", error=str(exc),
                                retry_in_s=wait_s, **fields)  # fmt: skip
                continue
            self.mark_sent(row, error=failure)
            if channel == NOTIFY:
                log.info("notification sent", **fields)
        return len(rows)
