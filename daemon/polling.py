"""Adaptive poll policy and duration estimates: pure maths, no I/O.

:class:`PollPolicy` is pure: status, progress figures, elapsed and expected duration in;
seconds until the next ``get`` of that job out (jittered by the injected ``random.Random``).
:class:`DurationEstimator` keeps the EWMA of observed durations per ``sep_type`` that
feeds ``expected_s`` (and a spread, and seconds per input second for kinds not seen yet).
The engine plans polls with :mod:`daemon.poll_plan`, which takes the running statuses'
timing from its own model and the others' from :meth:`PollPolicy.base_delay`; the policy
alone is today's per-job timer (the baseline in ``bench/bench_pacing.py``).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """Seconds until the next ``get`` of one job: pure maths, all knobs documented here.

    Every answer is ``base * (1 ± jitter)`` (uniform, from the caller's rng) and never below
    ``min_interval_s``; ``base`` is clamped to ``[floor, max_interval_s]`` before jitter.
    """

    min_interval_s: float = 1.0
    """Absolute floor of every delay, after jitter."""
    jitter: float = 0.15
    """Relative jitter: the delay is scaled by a uniform factor in [1 - jitter, 1 + jitter]."""
    max_interval_s: float = 60.0
    """Cap of every base delay: a job is polled at least about once a minute."""
    waiting_base_s: float = 5.0
    """``waiting`` with nothing ahead (position 0)."""
    waiting_per_position_s: float = 5.0
    """Added per job ahead in the queue (position 3 -> 20 s, 11+ -> the 60 s cap)."""
    waiting_unknown_s: float = 15.0
    """``waiting`` without a queue position."""
    processing_unknown_s: float = 15.0
    """``processing`` while no duration is expected yet (nothing observed, no prior)."""
    processing_first_fraction: float = 0.8
    """First poll of a running job at this fraction of its expected duration."""
    processing_step_fraction: float = 0.2
    """Then every ``step * expected`` until the expected duration has passed."""
    processing_overdue_fraction: float = 0.1
    """Past the expected duration: every ``overdue * elapsed`` (fast at first, then backs
    off for a job that is very late)."""
    processing_floor_s: float = 1.0
    """Shortest base delay for running jobs (``processing``, ``distributing``, ``merging``);
    the poll planner's floor for them too (it was 2.0 before the planner: the baseline in
    ``bench/bench_pacing.py`` keeps that)."""
    distributing_unknown_s: float = 10.0
    """``distributing`` before any chunk has finished."""
    merging_s: float = 4.0
    """``merging``: the chunks are done, the result follows shortly."""
    done_pending_s: float = 4.0
    """``done`` whose files have no urls yet."""
    other_s: float = 10.0
    """Any other status (unknown ones included)."""

    def next_poll_delay(
        self,
        *,
        status: str,
        queue_position: int | None,
        finished_chunks: int | None,
        all_chunks: int | None,
        elapsed_s: float,
        expected_s: float | None,
        rng: random.Random,
    ) -> float:
        """Seconds until the next ``get`` of a job whose last answer had ``status``.

        ``queue_position``: jobs ahead of it (``current_order``, else ``queue_count``);
        ``elapsed_s``: seconds since its create was answered; ``expected_s``: from
        :meth:`DurationEstimator.expected` for its ``sep_type``.
        """
        base = self.base_delay(
            status=status,
            queue_position=queue_position,
            finished_chunks=finished_chunks,
            all_chunks=all_chunks,
            elapsed_s=elapsed_s,
            expected_s=expected_s,
        )
        factor = 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        return max(self.min_interval_s, base * factor)

    def base_delay(
        self,
        *,
        status: str,
        queue_position: int | None,
        finished_chunks: int | None,
        all_chunks: int | None,
        elapsed_s: float,
        expected_s: float | None,
    ) -> float:
        """:meth:`next_poll_delay` before jitter and the final floor (the poll planner
        takes the non-running statuses from here)."""
        if status == "waiting":
            return self._clamp(self._waiting(queue_position), self.waiting_base_s)
        if status == "processing":
            return self._clamp(self._processing(elapsed_s, expected_s), self.processing_floor_s)
        if status == "distributing":
            delay = self._distributing(finished_chunks, all_chunks, elapsed_s)
            return self._clamp(delay, self.processing_floor_s)
        if status == "merging":
            return self._clamp(self.merging_s, self.processing_floor_s)
        if status == "done":
            return self._clamp(self.done_pending_s, self.min_interval_s)
        return self._clamp(self.other_s, self.min_interval_s)

    def _clamp(self, delay: float, floor: float) -> float:
        return min(self.max_interval_s, max(floor, self.min_interval_s, delay))

    def _waiting(self, position: int | None) -> float:
        if position is None:
            return self.waiting_unknown_s
        return self.waiting_base_s + self.waiting_per_position_s * max(0, position)

    def _processing(self, elapsed_s: float, expected_s: float | None) -> float:
        if expected_s is None or expected_s <= 0:
            return self.processing_unknown_s
        first = self.processing_first_fraction * expected_s
        if elapsed_s < first:
            return first - elapsed_s
        if elapsed_s <= expected_s:
            return self.processing_step_fraction * expected_s
        return self.processing_overdue_fraction * elapsed_s

    def _distributing(self, finished: int | None, total: int | None, elapsed_s: float) -> float:
        if not finished or not total or finished <= 0 or elapsed_s <= 0:
            return self.distributing_unknown_s
        per_chunk_s = elapsed_s / finished
        return per_chunk_s * max(0, total - finished)


class DurationEstimator:
    """EWMAs of observed create->done durations, per ``sep_type`` with a global fallback.

    Two averages per key: of the seconds, and of the ratio seconds / input seconds (when the
    input's duration is known). ``expected(sep_type, input_s=)``, first that applies: the
    type's ratio x ``input_s``; the type's seconds; the global ratio x ``input_s``; the
    global seconds; ``prior_ratio`` x ``input_s`` (a kind never seen: MVSEP's processing
    grows with the input); ``prior_s`` (``None`` by default: the policy then polls at its
    ``processing_unknown_s`` cadence). ``spread`` is the matching standard deviation (from
    an EWMA of the absolute deviation, x 1.25), ``prior_spread`` x expected until a key has
    two observations, then shrunk towards it as if it were two deviations seen. ``alpha``
    [0.3] weighs the newest observation; the first observation of a key seeds its average.
    Thread-safe; no I/O.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        prior_s: float | None = None,
        prior_ratio: float | None = 0.5,
        prior_spread: float = 0.5,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._prior_s = prior_s
        self._prior_ratio = prior_ratio
        self._prior_spread = prior_spread
        self._seconds: dict[int | None, _Ewma] = {}  # None: the global average
        self._ratios: dict[int | None, _Ewma] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        sep_type: int,
        seconds: float,
        *,
        input_s: float | None = None,
        within_s: float = 0.0,
    ) -> None:
        """Record one job's duration; non-finite or non-positive values are ignored.

        ``within_s``: how wide the interval it is known to lie in was (the gap between the
        last poll that did not see it done and the one that did): the spread never learns
        less than that uncertainty (``within_s / sqrt(12)``, a uniform's deviation)."""
        if not math.isfinite(seconds) or seconds <= 0:
            return
        scale = input_s if input_s is not None and input_s > 0 else None
        floor = max(0.0, within_s) / math.sqrt(12.0)
        with self._lock:
            for key in (sep_type, None):
                self._add(self._seconds.setdefault(key, _Ewma()), seconds, floor)
                if scale is not None and math.isfinite(seconds / scale):
                    ratios = self._ratios.setdefault(key, _Ewma())
                    self._add(ratios, seconds / scale, floor / scale)

    def _add(self, avg: _Ewma, value: float, least: float) -> None:
        """The uncertainty floor is held to the spread already believed: a wide interval
        (a late poll) neither inflates the spread nor lets it collapse."""
        if avg.count:
            least = min(least, self._sd(avg) / 1.25)
        avg.add(value, self._alpha, least)

    def expected(self, sep_type: int, *, input_s: float | None = None) -> float | None:
        found = self._estimate(sep_type, input_s)
        return None if found is None else found[0]

    def spread(self, sep_type: int, *, input_s: float | None = None) -> float | None:
        """The standard deviation that goes with :meth:`expected` (``None`` alike)."""
        found = self._estimate(sep_type, input_s)
        return None if found is None else found[1]

    def _estimate(self, sep_type: int, input_s: float | None) -> tuple[float, float] | None:
        known = input_s is not None and input_s > 0
        scale = input_s if input_s is not None and known else 1.0
        with self._lock:
            for key in (sep_type, None):
                ratio = self._ratios.get(key)
                if known and ratio is not None:
                    return ratio.mean * scale, self._sd(ratio) * scale
                seconds = self._seconds.get(key)
                if seconds is not None:
                    return seconds.mean, self._sd(seconds)
        if known and self._prior_ratio is not None:
            mean = self._prior_ratio * scale
        elif self._prior_s is not None:
            mean = self._prior_s
        else:
            return None
        return mean, self._prior_spread * mean

    def _sd(self, avg: _Ewma) -> float:
        """The learned deviation, shrunk towards the prior's (``prior_spread`` x mean) as if
        the prior were ``_PRIOR_WEIGHT`` deviations seen: two close first durations do not
        make the model sure (in a first wave the short jobs end first: 20.6 and 21.9 s of
        jobs 30 +- 10 s made it 21 +- 1.6 s, so every other job looked done at 23 s)."""
        prior = self._prior_spread * avg.mean
        seen = avg.count - 1  # deviations observed (the first value only seeds the mean)
        if seen < 1:
            return prior
        learned = 1.25 * avg.deviation
        blended = (seen * learned + _PRIOR_WEIGHT * prior) / (seen + _PRIOR_WEIGHT)
        return max(blended, _MIN_SPREAD * avg.mean)


_MIN_SPREAD = 0.05
"""The spread never falls below this fraction of the mean (identical observations)."""

_PRIOR_WEIGHT = 2.0
"""How many observed deviations the prior's spread counts for (see ``_sd``)."""


@dataclass
class _Ewma:
    mean: float = 0.0
    deviation: float = 0.0  # EWMA of |value - mean|
    count: int = 0

    def add(self, value: float, alpha: float, least_deviation: float = 0.0) -> None:
        off = max(abs(value - self.mean), least_deviation)
        if self.count == 0:
            self.mean = value
        elif self.count == 1:
            self.deviation = off
            self.mean += alpha * (value - self.mean)
        else:
            self.deviation += alpha * (off - self.deviation)
            self.mean += alpha * (value - self.mean)
        self.count += 1


__all__ = ["DurationEstimator", "PollPolicy"]
