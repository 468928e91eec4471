"""What one journaled change of a job logs: its level and its fields (one meaning per key)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from daemon.records import Job

_WARN_KINDS = frozenset({"failed", "dispose_error"})
# events whose journal detail is not a reason: the key it is logged under
_DETAIL_KEYS = {
    "seen": "path",
    "status": "mvsep_status",
    "submitted": "hash",
    "submit_intent": "nonce",
    "deferred": "error",
    "poll_failed": "error",
}


def change_fields(job: Job, kind: str, detail: str) -> dict[str, object]:
    """The log fields of one journaled change: one meaning per key (a reason in ``reason``,
    paths in ``path``, hashes in ``hash``, MVSEP's status in ``mvsep_status``, a
    disposal in ``disposed``)."""
    fields: dict[str, object] = {"job_id": job.id, "file": str(job.source.path)}
    fields["state"] = job.state.value
    if kind == "filed":
        fields["path"] = list(job.outputs)  # `job filed` lists the stems
    elif kind in _DETAIL_KEYS:
        if detail:
            fields[_DETAIL_KEYS[kind]] = detail
    elif kind == "source_disposed":
        how, _, where = detail.partition(":")
        fields["disposed"] = how
        if where:
            fields["path"] = where
    elif detail:
        fields["reason"] = detail
    return fields


def change_level(kind: str) -> int:
    """Failures at WARNING, every other state change at INFO."""
    return logging.WARNING if kind in _WARN_KINDS else logging.INFO


def chain_listeners(
    first: Callable[[Job, str, str], None] | None, second: Callable[[Job, str, str], None]
) -> Callable[[Job, str, str], None]:
    """Both listeners, ``first`` (if any) then ``second``."""
    if first is None:
        return second

    def both(job: Job, kind: str, reason: str) -> None:
        first(job, kind, reason)
        second(job, kind, reason)

    return both
