"""The custom collector behind ``/metrics`` (needs ``prometheus_client``: the ``[http]``
extra; :func:`daemon.metrics.render` imports it only when asked for the page).

Each scrape reads the journal afresh (four aggregate queries: jobs, events, durations,
notes) and adds what :class:`~daemon.metrics.LiveStats` holds. Names are ``mvsep_watch_*``;
labels are inbox names, job states, routes, status codes, reason classes and modes: never a
path, a reason's text or anything of the token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon.jobs import JobState
from daemon.journal import INBOX_NOTE, Journal
from daemon.metrics import (
    DROP_TO_FILED_BUCKETS_S,
    FAILURE_CLASSES,
    INBOX_MODES,
    OTHER_FAILURE,
    PROCESSING_BUCKETS_S,
    LiveStats,
)

_P = "mvsep_watch_"
_HISTOGRAMS = (
    ("drop_to_filed", "drop_to_filed_seconds", DROP_TO_FILED_BUCKETS_S,
     "Seconds from a file journaled (found and settled) to its stems filed, per inbox."),
    ("processing", "mvsep_processing_seconds", PROCESSING_BUCKETS_S,
     "Seconds from MVSEP's create answer to its result seen (its queue and its work)."),
)  # fmt: skip


class JournalCollector(Collector):
    """The metrics of one journal (and of the running process, when ``live`` is given)."""

    def __init__(self, journal: Journal, live: LiveStats | None, *, today_since: float) -> None:
        self._journal = journal
        self._live = live
        self._today_since = today_since

    def collect(self) -> Iterable[Metric]:
        notes = self._inbox_notes()
        yield from self._jobs(notes)
        yield from self._events()
        yield from self._durations()
        yield from self._inboxes(notes)
        if self._live is not None:
            yield from live_metrics(self._live)

    # ------------------------------------------------------------ journal

    def _inbox_notes(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, (text, _at) in self._journal.notes_with(INBOX_NOTE).items():
            try:
                data = json.loads(text)
            except ValueError:
                continue
            out[name] = data if isinstance(data, dict) else {}
        return out

    def _jobs(self, notes: Mapping[str, object]) -> Iterator[Metric]:
        tally = self._journal.job_tally(since=self._today_since)
        jobs = GaugeMetricFamily(_P + "jobs", "Jobs in the journal by inbox and state.",
                                 labels=["inbox", "state"])  # fmt: skip
        counts = {(inbox, state): n for inbox, state, n, *_ in tally}
        inboxes = sorted({inbox for inbox, _ in counts} | set(notes) | self._live_inboxes())
        states = [s.value for s in JobState]
        states += sorted({state for _, state in counts} - set(states))
        for inbox in inboxes:
            for state in states:
                jobs.add_metric([inbox, state], counts.get((inbox, state), 0))
        yield jobs
        yield GaugeMetricFamily(
            _P + "slots_in_use",
            "Jobs that (may) hold an MVSEP parallel slot (submitting, queued, a create's retry).",
            value=sum(row[3] for row in tally),
        )
        yield GaugeMetricFamily(
            _P + "credits_used_today",
            "Credits of the jobs submitted since local midnight (MVSEP's figure, else the "
            "estimate).",
            value=sum(row[4] for row in tally),
        )
        yield CounterMetricFamily(
            _P + "credits_used",
            "Credits of every submitted job in the journal (MVSEP's figure, else the estimate).",
            value=sum(row[5] for row in tally),
        )

    def _live_inboxes(self) -> set[str]:
        return set() if self._live is None else set(self._live.inbox_modes)

    def _events(self) -> Iterator[Metric]:
        tally = self._journal.event_tally(FAILURE_CLASSES, other=OTHER_FAILURE)
        submits = CounterMetricFamily(
            _P + "submits", "Jobs created at MVSEP (create answered or reconciled), per inbox.",
            labels=["inbox"],
        )  # fmt: skip
        failures = CounterMetricFamily(
            _P + "failures",
            "Jobs that ended as failed, per inbox and reason class (a fixed label).",
            labels=["inbox", "reason"],
        )
        for (inbox, kind, label), n in sorted(tally.items()):
            if kind == "submitted":
                submits.add_metric([inbox], n)
            else:
                failures.add_metric([inbox, label], n)
        yield submits
        yield failures

    def _durations(self) -> Iterator[Metric]:
        edges = sorted(set(DROP_TO_FILED_BUCKETS_S) | set(PROCESSING_BUCKETS_S))
        tally = self._journal.duration_tally(edges)
        for which, name, buckets, help_text in _HISTOGRAMS:
            family = HistogramMetricFamily(_P + name, help_text, labels=["inbox"])
            for (kind, inbox), (below, count, total) in sorted(tally.items()):
                if kind == which:
                    family.add_metric([inbox], _buckets(edges, below, buckets, count), total)
            yield family

    def _inboxes(self, notes: Mapping[str, Mapping[str, object]]) -> Iterator[Metric]:
        modes = {name: _mode_of(note) for name, note in notes.items()}
        if self._live is not None:
            modes.update(self._live.inbox_modes)
        family = GaugeMetricFamily(
            _P + "inbox_mode", "1 for how each inbox is watched now (native, polling) or "
            "paused (its folder missing, its watch restarting); 0 for the others.",
            labels=["inbox", "mode"],
        )  # fmt: skip
        for inbox, mode in sorted(modes.items()):
            for each in INBOX_MODES:
                family.add_metric([inbox, each], 1 if each == mode else 0)
        yield family
        missed = CounterMetricFamily(
            _P + "rescans_missed_files",
            "Rescans that found a file no file event had reported, per inbox (this run).",
            labels=["inbox"],
        )
        for inbox, note in sorted(notes.items()):
            count = note.get("missed")
            missed.add_metric([inbox], count if isinstance(count, int) else 0)
        yield missed


def _mode_of(note: Mapping[str, object]) -> str:
    if note.get("paused"):
        return "paused"
    return "polling" if note.get("mode") == "polling" else "native"


def _buckets(
    edges: Sequence[float], below: Sequence[int], wanted: Sequence[float], count: int
) -> list[tuple[str, float]]:
    """The histogram's cumulative buckets (``le`` text, count) for its own edges."""
    at = dict(zip(edges, below, strict=True))
    out: list[tuple[str, float]] = [(_le(edge), at[edge]) for edge in wanted]
    return [*out, ("+Inf", count)]


def _le(edge: float) -> str:
    return str(float(edge))


def live_metrics(live: LiveStats) -> Iterator[Metric]:
    """The running process's part: API requests, 429s, the pacer, slots, credits left."""
    calls = CounterMetricFamily(
        _P + "api_calls", "MVSEP API requests sent (each attempt), by route and HTTP status "
        "('error': no answer).", labels=["route", "code"],
    )  # fmt: skip
    limited = CounterMetricFamily(
        _P + "api_rate_limited", "MVSEP API answers 429 (rate limited), by route.",
        labels=["route"],
    )  # fmt: skip
    routes: dict[str, int] = {}
    for (route, code), n in sorted(live.api_calls.items()):
        calls.add_metric([route, code], n)
        routes[route] = routes.get(route, 0) + (n if code == "429" else 0)
    for route, n in sorted(routes.items()):
        limited.add_metric([route], n)
    yield calls
    yield limited
    yield CounterMetricFamily(_P + "pacer_waits", "API requests the pacer held back.",
                              value=live.pacer_waits)  # fmt: skip
    yield CounterMetricFamily(_P + "pacer_wait_seconds", "Seconds API requests were held "
                              "back by the pacer, summed.", value=live.pacer_wait_s)  # fmt: skip
    yield from _per_route(
        "rate_limit_headroom", "API requests the pacer would send now without waiting.",
        live.headroom,
    )  # fmt: skip
    yield from _per_route(
        "rate_limit", "The lowest X-RateLimit-Limit MVSEP has sent, by route.", live.rate_limits
    )
    if live.slots_limit is not None:
        yield GaugeMetricFamily(_P + "slots_limit", "Jobs that may hold an MVSEP slot now.",
                                value=live.slots_limit)  # fmt: skip
    if live.credits_left is not None:
        yield GaugeMetricFamily(_P + "credits_left", "The account's credits (premium_minutes) "
                                "at its last read.", value=live.credits_left)  # fmt: skip


def _per_route(name: str, help_text: str, values: Mapping[str, int]) -> Iterator[Metric]:
    family = GaugeMetricFamily(_P + name, help_text, labels=["route"])
    for route, value in sorted(values.items()):
        family.add_metric([route], value)
    yield family
