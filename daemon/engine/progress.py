"""Each active job's progress, kept in the journal for ``status`` (another process).

:class:`JournalProgress` is an ``on_progress`` hook (``daemon.engine.context.ProgressHook``).
On the caller's thread (an upload or download in flight) it only updates a dict: the
latest queue position and chunks (``queue``), upload and download bytes (``upload``,
``download``) of each job. A thread of its own writes what changed to the journal's
``progress`` table once every ``every_s``, all jobs in one transaction: never on a
transfer's path; with nothing changed it sleeps until a change comes (no wake-ups while
the daemon is idle). A state change drops what belonged to the state before; a finished
job's row is deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from daemon.errors import JournalError
from daemon.journal import Journal

log = structlog.get_logger(__name__)

_KINDS = ("queue", "upload", "download")
_ENDS = ("filed", "failed", "cancelled")  # the events that end a job


class JournalProgress:
    """``hook(job_id, kind, data)``: progress into the journal, at most once per ``every_s``."""

    def __init__(self, journal: Journal, *, every_s: float = 1.0, thread: bool = True) -> None:
        """``thread=False``: nothing is written until :meth:`flush` (tests drive it)."""
        self._journal = journal
        self._every_s = every_s
        self._lock = threading.Lock()
        self._latest: dict[int, dict[str, Any]] = {}
        self._dirty: set[int] = set()
        self._stop = threading.Event()
        self._changed = threading.Event()  # set with each change: the writer's thread wakes
        self._thread: threading.Thread | None = None
        self._use_thread = thread

    def __call__(self, job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "state":
            self._state(job_id, ended=str(data.get("event", "")) in _ENDS)
            return
        if kind not in _KINDS:
            return
        with self._lock:
            latest = self._latest.setdefault(job_id, {})
            if latest.get(kind) != dict(data):
                latest[kind] = dict(data)
                self._dirty.add(job_id)
                self._changed.set()
        self._ensure_thread()

    def _state(self, job_id: int, *, ended: bool) -> None:
        with self._lock:
            had = self._latest.pop(job_id, None)
            if had is not None or ended:  # ended: a row from before a restart goes too
                self._dirty.add(job_id)
                self._changed.set()

    def _ensure_thread(self) -> None:
        with self._lock:
            if not self._use_thread or self._thread is not None:
                return
            thread = self._thread = threading.Thread(
                target=self._run, name="mvsep-progress", daemon=True
            )
        thread.start()

    def _run(self) -> None:
        while True:
            self._changed.wait()  # idle: asleep until a change (or close) sets it
            if self._stop.wait(self._every_s) or self._journal.closed:
                return  # the changes of the last ``every_s`` gather into one write
            self._changed.clear()  # before the flush: a change during it is written next
            self.flush()

    def flush(self) -> None:
        """Write what changed since the last flush (one transaction)."""
        with self._lock:
            changes = {job_id: self._latest.get(job_id) for job_id in self._dirty}
            self._dirty.clear()
        if not changes:
            return
        try:
            self._journal.set_progress_many(changes)
        except (JournalError, OSError) as exc:  # progress must never break a job
            log.debug("progress not journaled", error=str(exc))

    def close(self) -> None:
        self._stop.set()
        self._changed.set()


def chain_progress(
    first: Callable[[int, str, Mapping[str, Any]], None],
    second: Callable[[int, str, Mapping[str, Any]], None] | None,
) -> Callable[[int, str, Mapping[str, Any]], None]:
    """Both hooks, ``first`` then ``second`` (if any)."""
    if second is None:
        return first

    def both(job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        first(job_id, kind, data)
        second(job_id, kind, data)

    return both
