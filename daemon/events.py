"""The events a job can receive (plain data); ``daemon.jobs.transition`` applies them.

Each event's ``kind`` is its name in the journal's event log and in ``jobs.ALLOWED``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.records import JobState, ResultFile


@dataclass(frozen=True)
class Prepared:
    """The input was sniffed and hashed: it is audio and may be submitted."""

    sha256: str
    estimated_credits: float | None = None
    kind: str = field(default="prepared", init=False)


@dataclass(frozen=True)
class SubmitIntent:
    """Journaled BEFORE the create POST; the nonce goes into the upload name. ``base_url``:
    the MVSEP host the create goes to, where the job then lives (every later call for it
    goes there)."""

    nonce: str
    base_url: str | None = None
    kind: str = field(default="submit_intent", init=False)


@dataclass(frozen=True)
class Submitted:
    hash: str
    reconciled: bool = False
    used_credits: float | None = None
    kind: str = field(default="submitted", init=False)


@dataclass(frozen=True)
class ReconciledAbsent:
    """History shows no job with our nonce after the grace period: nothing was created."""

    kind: str = field(default="reconciled_absent", init=False)


@dataclass(frozen=True)
class StatusSeen:
    """A poll answered with a new status (or after failed polls: it ends their streak)."""

    status: str
    kind: str = field(default="status", init=False)


@dataclass(frozen=True)
class PollFailed:
    """A poll of a queued job failed (retry-later): the job stays ``queued`` and is polled
    again at ``due_at``. Journaled so that the backoff and the deadline survive a restart."""

    error: str
    due_at: float
    kind: str = field(default="poll_failed", init=False)


@dataclass(frozen=True)
class ResultReady:
    files: tuple[ResultFile, ...]
    kind: str = field(default="result_ready", init=False)


@dataclass(frozen=True)
class Duplicate:
    """Same content and request as an earlier filed job: file copies of its outputs."""

    of_job: int
    files: tuple[ResultFile, ...]
    sha256: str
    kind: str = field(default="duplicate", init=False)


@dataclass(frozen=True)
class OutputsPlanned:
    """Final output paths chosen (after collision resolution) BEFORE any is written."""

    paths: tuple[str, ...]
    kind: str = field(default="outputs_planned", init=False)


@dataclass(frozen=True)
class Filed:
    outputs: tuple[str, ...]
    kind: str = field(default="filed", init=False)


@dataclass(frozen=True)
class Deferred:
    """A retry-later error: wait until ``due_at``, then resume ``resume`` (default: here).

    ``recheck``: not an attempt that failed but a look again later (a missing folder, a
    copy still arriving): ``attempts`` and the retry streak's start are left as they are."""

    due_at: float
    error: str
    resume: JobState | None = None
    recheck: bool = False
    kind: str = field(default="deferred", init=False)


@dataclass(frozen=True)
class Resumed:
    kind: str = field(default="resumed", init=False)


@dataclass(frozen=True)
class Held:
    """A prepared job over a credit limit: it waits in ``held`` (nothing sent) until the
    limit allows it (the next local day, or credits bought); ``reason`` says which."""

    reason: str
    kind: str = field(default="held", init=False)


@dataclass(frozen=True)
class Released:
    """The credit limit that held the job allows it now: back to ``ready``."""

    reason: str
    kind: str = field(default="released", init=False)


@dataclass(frozen=True)
class Expired:
    """MVSEP no longer knows the hash (results deleted); back to ready for a new submit."""

    reason: str
    kind: str = field(default="expired", init=False)


@dataclass(frozen=True)
class CancelRequested:
    """Cancel cannot happen now (hash unknown yet, or processing): remember it."""

    reason: str
    kind: str = field(default="cancel_requested", init=False)


@dataclass(frozen=True)
class CancelDeclined:
    """A requested cancel is dropped (already processing and the policy keeps results)."""

    reason: str
    kind: str = field(default="cancel_declined", init=False)


@dataclass(frozen=True)
class Cancelled:
    reason: str
    kind: str = field(default="cancelled", init=False)


@dataclass(frozen=True)
class Failed:
    reason: str
    kind: str = field(default="failed", init=False)


Event = (
    Prepared
    | SubmitIntent
    | Submitted
    | ReconciledAbsent
    | StatusSeen
    | PollFailed
    | ResultReady
    | Duplicate
    | OutputsPlanned
    | Filed
    | Deferred
    | Resumed
    | Held
    | Released
    | Expired
    | CancelRequested
    | CancelDeclined
    | Cancelled
    | Failed
)
