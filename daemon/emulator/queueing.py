"""Over the parallel limit with ``over_limit="queue"``: queued jobs get slots as others end.

Pure: jobs and ``now`` go in; queued jobs get ``slot_mono`` set to the moment a slot freed
(first come, first served), so their phases run from then on, as if the server had started
them exactly when the previous job ended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from daemon.emulator.jobs import Job

Interval = tuple[float, float]  # (slot start, slot end; inf while still held)


def grant_slots(jobs: Iterable[Job], limit: int, now: float) -> list[Job]:
    """Give queued jobs of one account the slots that freed by ``now``; return them."""
    mine = list(jobs)
    queued = sorted((j for j in mine if j.queued), key=lambda j: (j.created_mono, j.id))
    if not queued:
        return []
    held = [_interval(j, now) for j in mine if j.slot_mono is not None]
    granted: list[Job] = []
    earliest = -math.inf
    for job in queued:
        moment = _first_free(held, limit, max(job.created_mono, earliest), now)
        if moment is None:
            break  # first come, first served: the later ones wait too
        job.slot_mono = earliest = moment
        held.append(_interval(job, now))
        granted.append(job)
    return granted


def _interval(job: Job, now: float) -> Interval:
    assert job.slot_mono is not None
    end = job.ended_at(now)
    return job.slot_mono, math.inf if end is None else end


def _first_free(held: list[Interval], limit: int, start: float, now: float) -> float | None:
    """The first moment in [start, now] at which fewer than ``limit`` slots are held."""
    if start > now:
        return None
    moments = sorted({start} | {end for _, end in held if start < end <= now})
    for moment in moments:
        if sum(1 for begin, end in held if begin <= moment < end) < limit:
            return moment
    return None
