"""The journal's reads: job queries, the event log and counts (also the read-only view)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from daemon.jobs import ACTIVE_STATES, Job, JobState
from daemon.journal.rows import (
    SOURCE_IN_PLACE,
    EventRow,
    event_from_row,
    job_from_row,
    same_version,
)


class JournalReads:
    """Read methods of :class:`~daemon.journal.Journal`; they only need :meth:`_read`."""

    path: Path

    def _read(self, sql: str, args: Iterable[object] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def is_known(self, path: Path, size: int, mtime: float) -> bool:
        """Whether this exact file (path, size, mtime) already has a job and is still in place."""
        return self._find_known(path, size, mtime) is not None

    def _find_known(self, path: Path, size: int, mtime: float) -> sqlite3.Row | None:
        rows = self._read(
            "SELECT * FROM jobs WHERE source_path = ? AND size = ? AND mtime = ?"
            " AND (source_disposed IS NULL OR source_disposed IN"
            f" ({','.join('?' * len(SOURCE_IN_PLACE))}))"
            " ORDER BY id DESC LIMIT 1",
            (str(path), size, mtime, *SOURCE_IN_PLACE),
        )
        return rows[0] if rows else None

    def _get(self, db: sqlite3.Connection, job_id: int) -> Job:
        rows = list(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)))
        if not rows:
            raise KeyError(f"no job {job_id} in journal {self.path}")
        return job_from_row(rows[0])

    def get(self, job_id: int) -> Job:
        """The job with this id (``KeyError`` if there is none)."""
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise KeyError(f"no job {job_id} in journal {self.path}")
        return job_from_row(rows[0])

    def is_current(self, job: Job) -> bool:
        """Whether ``job`` is still what the journal holds: no change was committed since it
        was read. The scheduler acts on a snapshot of every active job; a step that ended
        after the snapshot was read made its entry stale (a second poll of a job already
        downloading, a prepare of a job already deferred: spurious ``IllegalTransition``)."""
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job.id,))
        return bool(rows) and same_version(job_from_row(rows[0]), job)

    def jobs_in(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        rows = self._read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", wanted)
        return [job_from_row(r) for r in rows]

    def active_jobs(self) -> list[Job]:
        """Every non-terminal job, oldest first (what a restart resumes)."""
        return self.jobs_in(ACTIVE_STATES)

    def jobs_for_path(self, path: Path) -> list[Job]:
        """Every job ever seen at ``path`` (each version dropped there), oldest first."""
        rows = self._read("SELECT * FROM jobs WHERE source_path = ? ORDER BY id", (str(path),))
        return [job_from_row(r) for r in rows]

    def active_for_path(self, path: Path) -> list[Job]:
        return [j for j in self.jobs_for_path(path) if not j.state.is_terminal]

    def undisposed(self) -> list[Job]:
        """Filed or failed jobs whose input was not dealt with yet (a cut-off disposal)."""
        rows = self._read(
            "SELECT * FROM jobs WHERE state IN (?, ?) AND source_disposed IS NULL ORDER BY id",
            (JobState.FILED.value, JobState.FAILED.value),
        )
        return [job_from_row(r) for r in rows]

    def find_filed_duplicate(self, sha256: str, request_key: str, *, exclude_id: int) -> Job | None:
        """The newest filed job with the same content and request, excluding ``exclude_id``."""
        rows = self._read(
            "SELECT * FROM jobs WHERE sha256 = ? AND request_key = ? AND state = ? AND id != ?"
            " ORDER BY id DESC",
            (sha256, request_key, JobState.FILED.value, exclude_id),
        )
        return job_from_row(rows[0]) if rows else None

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
        return [job_from_row(r) for r in rows]

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
        return [event_from_row(r) for r in rows]

    def jobs_by_id(self, ids: Iterable[int]) -> dict[int, Job]:
        """The jobs with these ids (one query; missing ones are left out)."""
        wanted = sorted(set(ids))
        marks = ",".join("?" * len(wanted))
        rows = self._read(f"SELECT * FROM jobs WHERE id IN ({marks})", wanted)
        return {int(r["id"]): job_from_row(r) for r in rows}

    def counts_by_inbox(self) -> dict[str, dict[str, int]]:
        """Inbox name → state → jobs (one query; only states that have jobs)."""
        rows = self._read("SELECT inbox, state, COUNT(*) AS n FROM jobs GROUP BY inbox, state")
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            counts.setdefault(str(r["inbox"]), {})[str(r["state"])] = int(r["n"])
        return counts

    def credits_since(self, since: float) -> float:
        """Credits charged for jobs submitted since ``since`` (wall clock; the history's
        figures, an estimate where there is none yet)."""
        rows = self._read(
            "SELECT SUM(COALESCE(used_credits, estimated_credits, 0)) AS c FROM jobs"
            " WHERE intent_at >= ? AND mvsep_hash IS NOT NULL",
            (since,),
        )
        return float(rows[0]["c"] or 0.0)

    def find_jobs(
        self, *, states: Iterable[str] = (), inbox: str | None = None, limit: int = 1000
    ) -> list[Job]:
        """Jobs newest first, of these states (all if none) and this inbox (all if None)."""
        where, args = [], []
        wanted = list(states)
        if wanted:
            where.append(f"state IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if inbox is not None:
            where.append("inbox = ?")
            args.append(inbox)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [job_from_row(r) for r in rows]

    def outbox_status(self) -> dict[str, object] | None:
        """The notification outbox for `status`: rows per state (waiting, sent, given_up) and
        the most recent error of a notification not delivered or of a hook run; None for a
        journal before schema v4."""
        try:
            counts = self._read("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            last = self._read(
                "SELECT channel, topic, target, last_error, last_error_at FROM outbox"
                " WHERE last_error IS NOT NULL AND (state != 'sent' OR channel = 'hook')"
                " ORDER BY last_error_at DESC, id DESC LIMIT 1"
            )
        except sqlite3.OperationalError:  # no outbox table (an older journal, read-only)
            return None
        by_state = {str(r["state"]): int(r["n"]) for r in counts}
        error = None
        if last:
            r = last[0]
            error = {"channel": r["channel"], "topic": r["topic"], "target": r["target"],
                     "error": r["last_error"], "at": r["last_error_at"]}  # fmt: skip
        return {"counts": by_state, "last_error": error}

    def filed_without_credits(self, *, since: float) -> list[Job]:
        """Filed jobs sent to MVSEP whose credits are unknown, last changed at or after
        ``since`` (wall clock), oldest first: what the credit reads pick up at start."""
        rows = self._read(
            "SELECT * FROM jobs WHERE updated_at >= ? AND state = ? AND used_credits IS NULL"
            " AND mvsep_hash IS NOT NULL ORDER BY id",
            (since, JobState.FILED.value),
        )
        return [job_from_row(r) for r in rows]

    def finished_since(self, since: float) -> tuple[list[Job], list[Job]]:
        """The jobs filed and the jobs failed whose change came at or after ``since`` (wall
        clock), oldest first: what the daily summary counts."""
        rows = self._read(
            "SELECT e.to_state AS ended, j.* FROM events e JOIN jobs j ON j.id = e.job_id"
            " WHERE e.at >= ? AND e.to_state IN ('filed', 'failed')"
            " AND (e.from_state IS NULL OR e.from_state != e.to_state) ORDER BY e.id",
            (since,),
        )
        filed = [job_from_row(r) for r in rows if r["ended"] == "filed"]
        failed = [job_from_row(r) for r in rows if r["ended"] == "failed"]
        return filed, failed

    # ------------------------------------------------------------ aggregates (/metrics)

    def job_tally(self, *, since: float) -> list[tuple[str, str, int, int, float, float]]:
        """Per (inbox, state): jobs, jobs holding an MVSEP slot, credits of the jobs
        submitted since ``since`` and of all jobs (as :meth:`credits_since` counts them).
        One scan of ``jobs``, whatever its size."""
        cost = "COALESCE(used_credits, estimated_credits, 0)"
        sent = "mvsep_hash IS NOT NULL AND intent_at IS NOT NULL"
        rows = self._read(
            "SELECT inbox, state, COUNT(*) AS n,"
            " SUM(state IN (?, ?) OR (state = ? AND resume_state = ?)) AS slots,"
            f" SUM(CASE WHEN {sent} AND intent_at >= ? THEN {cost} ELSE 0 END) AS today,"
            f" SUM(CASE WHEN {sent} THEN {cost} ELSE 0 END) AS total"
            " FROM jobs GROUP BY inbox, state",
            (JobState.SUBMITTING.value, JobState.QUEUED.value, JobState.RETRY_WAIT.value,
             JobState.SUBMITTING.value, since),
        )  # fmt: skip
        return [
            (str(r["inbox"]), str(r["state"]), int(r["n"]), int(r["slots"] or 0),
             float(r["today"] or 0.0), float(r["total"] or 0.0))
            for r in rows
        ]  # fmt: skip

    def event_tally(
        self, failure_classes: Iterable[tuple[str, Iterable[str]]], *, other: str
    ) -> dict[tuple[str, str, str], int]:
        """``submitted`` and ``failed`` events: (inbox, kind, class) -> events, where a
        failure's class is the label of the first of ``failure_classes`` one of whose
        ``LIKE`` patterns its reason matches (``other`` if none; '' for submits). One
        query: the classes are a ``CASE`` in SQL, never a loop over the rows."""
        whens: list[str] = []
        args: list[str] = []
        for label, patterns in failure_classes:
            for pattern in patterns:
                whens.append("WHEN e.reason LIKE ? THEN ?")
                args.extend((pattern, label))
        case = f"CASE {' '.join(whens)} ELSE ? END" if whens else "?"
        rows = self._read(
            f"SELECT j.inbox AS inbox, e.kind AS kind, CASE WHEN e.kind = 'failed' THEN {case}"
            " ELSE '' END AS class, COUNT(*) AS n FROM events e JOIN jobs j ON j.id = e.job_id"
            " WHERE e.kind IN ('submitted', 'failed') GROUP BY 1, 2, 3",
            (*args, other),
        )
        return {(str(r["inbox"]), str(r["kind"]), str(r["class"])): int(r["n"]) for r in rows}

    def duration_tally(
        self, buckets: Iterable[float]
    ) -> dict[tuple[str, str], tuple[list[int], int, float]]:
        """Histograms from the event times: (``drop_to_filed`` | ``processing``, inbox) ->
        (observations at or below each of ``buckets``, observations, their sum in seconds).
        ``drop_to_filed``: a ``filed`` event after its job was journaled; ``processing``: a
        ``result_ready`` event after the latest ``submitted`` before it (MVSEP's queue and
        work). One query (the buckets are ``SUM``s), no loop over the rows."""
        edges = list(buckets)
        sums = "".join(f", SUM(d <= ?) AS b{i}" for i in range(len(edges)))
        # one scan of the events; the latest submit before each event by a window (no
        # correlated subquery: SQLite would run it again for every bucket's SUM)
        timed = (
            "SELECT kind, job_id, at, at - MAX(CASE WHEN kind = 'submitted' THEN at END)"
            " OVER (PARTITION BY job_id ORDER BY id ROWS UNBOUNDED PRECEDING) AS since_submit"
            " FROM events WHERE kind IN ('submitted', 'result_ready', 'filed')"
        )
        rows = self._read(
            f"SELECT which, inbox, COUNT(d) AS n, SUM(d) AS total{sums} FROM ("
            " SELECT CASE WHEN t.kind = 'filed' THEN 'drop_to_filed' ELSE 'processing' END"
            " AS which, j.inbox AS inbox, MAX(0, CASE WHEN t.kind = 'filed'"
            " THEN t.at - j.created_at ELSE t.since_submit END) AS d"
            f" FROM ({timed}) t JOIN jobs j ON j.id = t.job_id WHERE t.kind != 'submitted'"
            ") WHERE d IS NOT NULL GROUP BY which, inbox",
            edges,
        )
        return {
            (str(r["which"]), str(r["inbox"])): (
                [int(r[f"b{i}"] or 0) for i in range(len(edges))],
                int(r["n"]),
                float(r["total"] or 0.0),
            )
            for r in rows
        }
