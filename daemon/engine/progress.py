"""Each active job's progress, kept in the journal for ``status`` (another process).

:class:`JournalProgress` is an ``on_progress`` hook (``daemon.engine.context.ProgressHook``):
the latest queue position and chunks (``queue``), upload and download bytes (``upload``,
``download``) of each job are written to the journal's ``progress`` table at most once per
``every_s`` per job (the last bytes of a transfer at once), never on the transfer's own
path beyond a dict update and a clock read. A state change drops what belonged to the
state before; a finished job's row is deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from daemon.journal import Journal

log = structlog.get_logger(__name__)

_KINDS = ("queue", "upload", "download")
_ENDS = ("filed", "failed", "cancelled")  # the events that end a job


class JournalProgress:
    """``hook(job_id, kind, data)``: progress into the journal, throttled per job."""

    def __init__(
        self,
        journal: Journal,
        *,
        every_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._journal = journal
        self._every_s = every_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._latest: dict[int, dict[str, Any]] = {}
        self._written_at: dict[int, float] = {}

    def __call__(self, job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "state":
            self._state(job_id, ended=str(data.get("event", "")) in _ENDS)
            return
        if kind not in _KINDS:
            return
        now = self._monotonic()
        with self._lock:
            latest = self._latest.setdefault(job_id, {})
            if latest.get(kind) == dict(data):
                return
            latest[kind] = dict(data)
            due = now - self._written_at.get(job_id, -self._every_s) >= self._every_s
            if not (due or _complete(kind, data)):
                return
            self._written_at[job_id] = now
            snapshot = {k: dict(v) for k, v in latest.items()}
        self._write(job_id, snapshot)

    def _state(self, job_id: int, *, ended: bool) -> None:
        with self._lock:
            had = self._latest.pop(job_id, None)
            self._written_at.pop(job_id, None)
        if had is not None or ended:  # ended: a row from before a restart goes too
            self._write(job_id, None)

    def _write(self, job_id: int, data: dict[str, Any] | None) -> None:
        try:
            self._journal.set_progress(job_id, data)
        except Exception as exc:  # a progress line must never break a job
            log.debug("progress not journaled", job_id=job_id, error=str(exc))


def _complete(kind: str, data: Mapping[str, Any]) -> bool:
    """The last bytes of a transfer: written at once (``status`` shows 100 %)."""
    done, total = (data.get("sent"), data.get("total")) if kind == "upload" else (
        data.get("received"), data.get("total"))  # fmt: skip
    return isinstance(total, int) and total > 0 and done == total


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
