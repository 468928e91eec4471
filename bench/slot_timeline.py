"""Where a freed MVSEP slot's idle time goes (bench_throughput.py): per freed slot, from
MVSEP's done to the next job holding that slot.

* (a) **detect**: MVSEP done → the answer of our ``get`` that saw it (the emulator's
  ``get_records``);
* (b) **to create**: that answer → the next create's request arriving at the emulator
  (a call recorder on the emulator's ``count_call``, in the bench process), split from the
  daemon's JSON log (``job result_ready``, ``job submit_intent``) into: the ``get``'s answer
  → the done journaled (``b1``), → the next job claimed (``b2``: the scheduler's pass, the
  slot counted free, a prepared job there), → its create at the emulator (``b3``: the pacer,
  the upload's start);
* (c) **upload**: the create's arrival → the slot assigned (``job_times().slot``: the body
  received, saved and probed).

The k-th slot freed (in the order our gets saw the dones) is paired with the
(slots + k)-th create: the first ``slots`` creates took the empty slots. The log's wall-clock
stamps are put on the monotonic clock with one offset read in the bench process (one
machine, one clock).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from daemon.emulator.state import EmulatorState


class CallRecorder:
    """Records when each API request reached the emulator (monotonic), per endpoint, by
    wrapping ``state.count_call`` (called first thing for every ``/api/`` request)."""

    def __init__(self, state: EmulatorState) -> None:
        self._lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}
        counted = state.count_call

        def count_call(endpoint: str) -> None:
            at = time.monotonic()
            with self._lock:
                self.arrivals.setdefault(endpoint, []).append(at)
            counted(endpoint)

        state.count_call = count_call  # type: ignore[method-assign]

    def times(self, endpoint: str) -> list[float]:
        with self._lock:
            return sorted(self.arrivals.get(endpoint, []))


@dataclass
class SlotGaps:
    """Seconds per freed slot (each list in the order the slots were freed)."""

    detect: list[float] = field(default_factory=list)
    to_create: list[float] = field(default_factory=list)
    upload: list[float] = field(default_factory=list)
    to_journal: list[float] = field(default_factory=list)
    to_claim: list[float] = field(default_factory=list)
    to_send: list[float] = field(default_factory=list)
    rejected_creates: int = 0

    def idle(self) -> float:
        """Slot-seconds idle between a done and the next slot assigned, summed."""
        return sum(self.detect) + sum(self.to_create) + sum(self.upload)


def log_events(text: str, offset_s: float) -> dict[str, list[tuple[float, int, dict[str, str]]]]:
    """The daemon's ``job ...`` JSON log lines by event: (monotonic time, job id, fields).

    ``offset_s`` is ``time.time() - time.monotonic()``. Progress text on the same stream
    (no newline) may precede a line: each line is read from its first ``{"``."""
    out: dict[str, list[tuple[float, int, dict[str, str]]]] = {}
    for line in text.splitlines():
        start = line.find('{"')
        if start < 0:
            continue
        try:
            data = json.loads(line[start:])
        except ValueError:
            continue
        event, job_id, stamp = data.get("event"), data.get("job_id"), data.get("timestamp")
        if not isinstance(event, str) or not isinstance(job_id, int) or not stamp:
            continue
        wall = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        out.setdefault(event, []).append((wall - offset_s, job_id, data))
    for events in out.values():
        events.sort(key=lambda e: e[0])
    return out


def slot_gaps(
    state: EmulatorState, creates: list[float], slots: int, log_text: str, offset_s: float
) -> SlotGaps:
    """(a), (b), (c) and (b)'s parts for every freed slot followed by a create."""
    times = state.job_times()
    done = {t.hash: t.done for t in times if t.done is not None}
    seen: dict[str, float] = {}
    for record in state.get_records():
        if record.status == "done" and record.files_visible and record.hash not in seen:
            seen[record.hash] = record.at
    freed = sorted((at, h) for h, at in seen.items() if h in done)
    assigned = sorted(t.slot if t.slot is not None else t.created for t in times)
    gaps = SlotGaps(rejected_creates=max(0, len(creates) - len(times)))
    events = log_events(log_text, offset_s)
    hash_of = {e[1]: e[2].get("hash") for e in events.get("job submitted", [])}
    ready_at = {hash_of.get(e[1]): e[0] for e in events.get("job result_ready", [])}
    intents = [e[0] for e in events.get("job submit_intent", [])]
    for k, (seen_at, job_hash) in enumerate(freed):
        nxt = slots + k
        if nxt >= len(creates) or nxt >= len(assigned):
            break
        gaps.detect.append(seen_at - done[job_hash])
        gaps.to_create.append(creates[nxt] - seen_at)
        gaps.upload.append(assigned[nxt] - creates[nxt])
        journaled = ready_at.get(job_hash)
        if journaled is not None and nxt < len(intents):
            gaps.to_journal.append(journaled - seen_at)
            gaps.to_claim.append(intents[nxt] - journaled)
            gaps.to_send.append(creates[nxt] - intents[nxt])
    return gaps


def _stats(values: Iterable[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "n/a"
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return f"mean {sum(ordered) / len(ordered):.2f} s, p95 {p95:.2f} s"


def report_gaps(gaps: SlotGaps, slots: int, span_s: float) -> list[str]:
    """The lines bench_throughput prints (``span_s``: first create → last done)."""
    if not gaps.detect:
        return ["  slot idle per freed slot: no slot was freed and taken again"]
    share = gaps.idle() / (slots * span_s) if span_s > 0 else math.nan
    lines = [
        f"  slot idle per freed slot (n={len(gaps.detect)}; {gaps.idle():.1f} slot-s, "
        f"{share:.1%} of the slot time):",
        f"    (a) MVSEP done -> our get saw it: {_stats(gaps.detect)}",
        f"    (b) that get -> the next create at MVSEP: {_stats(gaps.to_create)}",
    ]
    if gaps.to_journal:
        lines += [
            f"        b1 get answered -> done journaled: {_stats(gaps.to_journal)}",
            f"        b2 -> the next job claimed: {_stats(gaps.to_claim)}",
            f"        b3 -> its create at MVSEP: {_stats(gaps.to_send)}",
        ]
    lines.append(f"    (c) create arrived -> slot assigned (upload): {_stats(gaps.upload)}")
    if gaps.rejected_creates:
        lines.append(f"    creates without a job (refused): {gaps.rejected_creates}")
    return lines
