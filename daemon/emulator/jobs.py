"""One emulated separation job and its clock-driven phases (pure: ``now`` is passed in)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from daemon.emulator.catalogue import TypeSpec

ACTIVE_STATUSES = frozenset({"waiting", "processing", "distributing", "merging"})


@dataclass
class StemOut:
    """One output file of a job."""

    key: str
    label: str
    filename: str
    size: int = 0
    peaks: list[float] | None = None  # made on first use (see answers.peaks_of)


@dataclass(frozen=True)
class Phase:
    """What a job looks like at one instant."""

    status: str  # waiting|processing|distributing|merging|done|failed|cancelled|expired
    finished_chunks: int = 0
    all_chunks: int = 0
    files_visible: bool = False


@dataclass
class Job:
    """An emulated job. Mutated only under the state's lock."""

    id: int
    hash: str
    token: str
    upload_name: str
    type_spec: TypeSpec
    options: dict[str, str]
    output_format: int
    is_demo: bool
    created_at: datetime
    created_mono: float
    waiting_s: float
    processing_s: float
    chunk_seconds: float
    files_delay_s: float
    expire_after_s: float
    job_dir: Path
    input_path: Path
    source_url: str | None = None
    remote_type: str | None = None
    duration_s: float | None = None
    input_size: int = 0
    credits: float = 0.0
    cancelled: bool = False
    failure: str | None = None
    dsp_done_mono: float | None = None
    files: list[StemOut] = field(default_factory=list)
    files_hidden_until: float = 0.0
    # When the job got a parallel slot: its creation, or later when queued (over_limit "queue").
    slot_mono: float | None = None
    cancelled_mono: float | None = None
    # A failure is reported by the worker (at failure_mono) or scheduled by the job_failed fault
    # (shown at the end of the processing time); either shows only once the job has a slot.
    failure_mono: float | None = None
    failure_scheduled: bool = False
    region: str | None = None
    peaks_len: int = 0

    @property
    def sep_type(self) -> int:
        """The job's ``sep_type``."""
        return self.type_spec.render_id

    @property
    def all_chunks(self) -> int:
        """Chunks of a long input (0 when it is not split)."""
        if self.duration_s is None or self.duration_s <= self.chunk_seconds:
            return 0
        return math.ceil(self.duration_s / self.chunk_seconds)

    @property
    def queued(self) -> bool:
        """Whether the job still waits for a parallel slot (and is not cancelled)."""
        return self.slot_mono is None and not self.cancelled

    @property
    def processing_start(self) -> float:
        """Monotonic time at which processing starts (infinite while queued for a slot)."""
        if self.slot_mono is None:
            return math.inf
        return self.slot_mono + self.waiting_s

    def fail_at(self) -> float | None:
        """When the job shows ``failed`` (None: it does not fail)."""
        if self.failure is None:
            return None
        if self.failure_scheduled:
            return self.processing_start + self.processing_s
        reported = self.failure_mono if self.failure_mono is not None else 0.0
        return max(reported, self.processing_start)

    def ended_at(self, now: float) -> float | None:
        """When the job stopped holding a parallel slot, if it has by ``now``."""
        if self.cancelled:
            return self.cancelled_mono if self.cancelled_mono is not None else now
        ends = [t for t in (self.fail_at(), self.done_at()) if t is not None and t <= now]
        return min(ends) if ends else None

    @property
    def timed_done(self) -> float:
        """When the emulated timing says done (the DSP may still be running)."""
        end = self.processing_start + self.processing_s
        return end + (self.processing_s if self.all_chunks else 0.0)

    def done_at(self) -> float | None:
        """When the job is (or was) done: timing elapsed and the DSP finished."""
        if self.dsp_done_mono is None:
            return None
        return max(self.timed_done, self.dsp_done_mono)

    def deletion_at(self) -> float:
        """When the results are (or will be) deleted."""
        done = self.done_at()
        return (done if done is not None else self.timed_done) + self.expire_after_s

    def phase(self, now: float) -> Phase:
        """The job's phase at monotonic time ``now``."""
        if self.cancelled:
            return Phase("cancelled")
        if now >= self.deletion_at() and (self.done_at() is not None or self.failure):
            return Phase("expired")
        fail_at = self.fail_at()
        if fail_at is not None and now >= fail_at:
            return Phase("failed")
        if now < self.processing_start:
            return Phase("waiting")
        return self._running_phase(now)

    def _running_phase(self, now: float) -> Phase:
        processing_end = self.processing_start + self.processing_s
        if now < processing_end:
            return Phase("processing")
        chunks = self.all_chunks
        if chunks and now < self.timed_done:
            fraction = (now - processing_end) / max(self.processing_s, 1e-9)
            return Phase("distributing", min(chunks - 1, int(fraction * chunks)), chunks)
        done = self.done_at()
        if done is None or now < done:
            if chunks:
                return Phase("merging", chunks, chunks)
            return Phase("processing")
        visible = now >= done + self.files_delay_s and now >= self.files_hidden_until
        return Phase("done", chunks, chunks, files_visible=visible)

    def is_active(self, now: float) -> bool:
        """Whether the job is in flight (queued for a slot or not)."""
        return self.phase(now).status in ACTIVE_STATUSES

    def holds_slot(self, now: float) -> bool:
        """Whether the job counts against the parallel limit."""
        return self.slot_mono is not None and self.is_active(now)
