"""``/metrics``: the daemon in the Prometheus text format, computed from the journal.

:func:`render` builds the page at scrape time with a custom collector
(:mod:`daemon.metrics_collector`) on a registry of its own (never the global one), so a
restart resets nothing the journal knows: jobs by inbox and state, submits, failures by
reason class, credits, the drop-to-filed and MVSEP processing times, each inbox's watch
mode and the rescans that found a file no event reported (the watcher's ``inbox:NAME``
notes). Four aggregate queries per scrape, whatever the journal's size.

What only the running process knows is :class:`LiveStats`, read by :func:`live_stats` from a
running :class:`~daemon.service.Daemon`: API requests by route and answer (the client's
:class:`~daemon.mvsep.counters.ApiCounters`), 429s among them, the pacer's waits and
headroom, the slot limit, the account's credits left (its last ``/api/app/user``), each
inbox's mode now. These start at zero with the process, as Prometheus counters may.

A failure's class is a short fixed label (:data:`FAILURE_CLASSES`), never its free text: the
reasons hold paths and hashes. Nothing here reads or prints the API token (the journal
never holds it; the counters hold routes and status codes only).

``prometheus_client`` is the ``[http]`` extra: without it :func:`render` raises
:class:`MetricsUnavailable` (the HTTP server answers 501).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from daemon.errors import MvsepWatchError
from daemon.journal import Journal
from daemon.pacing import Pacer

if TYPE_CHECKING:
    from daemon.service import Daemon
    from daemon.watcher import InboxWatcher

FAILURE_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("not_audio", ("not an audio file:%",)),
    ("plan_cap", ("not sent: over the%",)),
    ("input_gone", ("%disappeared before it was sent%",)),
    ("mvsep_failed", ("MVSEP failed the separation%",)),
    ("expired", ("%expired at MVSEP%",)),
    ("naming", ("the stems could not be filed%",)),
    ("retries_exhausted", ("%still failing after%",)),
    ("history_unreadable", ("could not check MVSEP's history%",)),
    ("auth", ("%ApiAuthError%", "%refused the API token%")),
    ("rejected", ("%ApiRejected%", "MVSEP refused%")),
    ("not_found", ("%ApiNotFound%",)),
    ("disk_full", ("%disk full%",)),
    ("unexpected", ("%unexpected error%",)),
    ("status_unavailable", ("MVSEP status unavailable%",)),
)
"""A failure's reason class: the first label one of whose SQL ``LIKE`` patterns (ASCII case
ignored) its ``failed`` event's reason matches; :data:`OTHER_FAILURE` if none. The patterns
follow the reasons the engine writes (``engine/prepare.py``, ``submit.py``, ``poll.py``,
``deliver.py``, ``retry.py``)."""
OTHER_FAILURE = "other"

DROP_TO_FILED_BUCKETS_S: tuple[float, ...] = (
    30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400,
)  # fmt: skip
"""From a file journaled (found, settled) to its stems filed."""
PROCESSING_BUCKETS_S: tuple[float, ...] = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
"""From the create answered to MVSEP's result seen (its queue and its work)."""
INBOX_MODES = ("native", "polling", "paused")


class MetricsUnavailable(MvsepWatchError):
    """``prometheus_client`` is not installed (the ``[http]`` extra): no ``/metrics``."""


@dataclass(frozen=True)
class LiveStats:
    """What only the running process knows (all of it since the process started)."""

    api_calls: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(route, code) -> API requests sent, each attempt counted; code ``"429"``, ``"200"``…
    or ``"error"`` (no answer)."""
    pacer_waits: int = 0
    """Requests the pacer held back before they could go."""
    pacer_wait_s: float = 0.0
    """Seconds requests spent held back by the pacer, summed."""
    headroom: Mapping[str, int] = field(default_factory=dict)
    """Route -> requests the pacer would let go now without waiting (0 while blocked)."""
    rate_limits: Mapping[str, int] = field(default_factory=dict)
    """Route -> the lowest ``X-RateLimit-Limit`` MVSEP has sent on it."""
    slots_limit: int | None = None
    """Jobs that may hold an MVSEP slot now (None: the engine has not started)."""
    credits_left: float | None = None
    """The account's ``premium_minutes`` at its last read (None: not read yet)."""
    inbox_modes: Mapping[str, str] = field(default_factory=dict)
    """Inbox -> ``native``, ``polling`` or ``paused`` now."""


@dataclass(frozen=True)
class PacerFigures:
    """The pacer's part of :class:`LiveStats`."""

    waits: int = 0
    wait_s: float = 0.0
    headroom: Mapping[str, int] = field(default_factory=dict)
    rate_limits: Mapping[str, int] = field(default_factory=dict)


def pacer_figures(pacer: Pacer, *, now: float | None = None) -> PacerFigures:
    """The pacer's waits, each used route's headroom and its limit (``now`` on the pacer's
    clock; the daemon's pacer runs on ``time.monotonic``)."""
    stats = pacer.stats()
    at = time.monotonic() if now is None else now
    headroom: dict[str, int] = {}
    for kind in stats.granted:
        route = pacer.route_of(kind)
        room = pacer.headroom(kind, at)
        headroom[route] = min(room, headroom.get(route, room))
    return PacerFigures(stats.waited, stats.total_wait_s, headroom, dict(stats.limits))


def inbox_modes(watcher: InboxWatcher) -> dict[str, str]:
    """Each inbox's mode now: ``paused``, else how it is watched."""
    paused = set(watcher.paused())
    return {n: "paused" if n in paused else m for n, m in watcher.watch_modes().items()}


def live_stats(daemon: Daemon) -> LiveStats:
    """Read :class:`LiveStats` from a running daemon (parts not started yet are left out).
    Read-only: snapshots of counters the parts keep anyway."""
    client = daemon.client
    gate = None if client is None else client.counters.gate
    pacer = pacer_figures(gate) if isinstance(gate, Pacer) else PacerFigures()
    return LiveStats(
        api_calls={} if client is None else client.counters.calls(),
        pacer_waits=pacer.waits,
        pacer_wait_s=pacer.wait_s,
        headroom=pacer.headroom,
        rate_limits=pacer.rate_limits,
        slots_limit=None if daemon.engine is None else daemon.engine.slots,
        credits_left=None if client is None else client.counters.credits_left,
        inbox_modes={} if daemon.watcher is None else inbox_modes(daemon.watcher),
    )


def day_start(now: float) -> float:
    """Local midnight of the day ``now`` is in (what "today" means for credits, as in
    ``status``)."""
    local = datetime.fromtimestamp(now).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def render(
    journal: Journal, live: LiveStats | None = None, *, now: float | None = None
) -> tuple[bytes, str]:
    """The ``/metrics`` page: (body, content type) in the Prometheus text format.

    ``now`` (wall clock, default the time) only says when today began. Raises
    :class:`MetricsUnavailable` without ``prometheus_client``."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from daemon.metrics_collector import JournalCollector
    except ImportError as exc:
        raise MetricsUnavailable(
            "/metrics needs prometheus_client: pip install 'mvsep-watch[http]'"
        ) from exc
    registry = CollectorRegistry(auto_describe=False)
    when = time.time() if now is None else now
    registry.register(JournalCollector(journal, live, today_since=day_start(when)))
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = [
    "DROP_TO_FILED_BUCKETS_S",
    "FAILURE_CLASSES",
    "INBOX_MODES",
    "OTHER_FAILURE",
    "PROCESSING_BUCKETS_S",
    "LiveStats",
    "MetricsUnavailable",
    "PacerFigures",
    "day_start",
    "inbox_modes",
    "live_stats",
    "pacer_figures",
    "render",
]
