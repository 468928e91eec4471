"""What the engine's steps share: the context object, and recording what an error means.

Every step module (``prepare``, ``submit``, ``poll``, ``deliver``, ``dispose``) takes a
:class:`Context` and one job, performs one piece of I/O and records the outcome in the
journal. Outcomes are data: :func:`record_error` asks the pure :func:`~daemon.engine.retry.decide`
where the job goes and journals it (``retry_wait`` with its due time, or ``failed``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from daemon.clock import Clock
from daemon.engine import dispose, retry
from daemon.engine.credits import CreditBook
from daemon.engine.retry import Step
from daemon.engine.settings import EngineSettings
from daemon.errors import JournalGoneError, Stopping
from daemon.jobs import Job, JobState
from daemon.journal import Journal
from daemon.media import AudioProbe
from daemon.mvsep.client import MvsepClient

log = structlog.get_logger("daemon.engine")

ProgressHook = Callable[[int, str, Mapping[str, Any]], None]
"""``on_progress(job_id, kind, data)``; kinds: ``state``, ``queue``, ``upload``, ``download``."""


class Aborted(Stopping):
    """Raised from a transfer's progress callback when the engine stops or the job left
    ``downloading``."""


@dataclass
class Context:
    journal: Journal
    client: MvsepClient
    settings: EngineSettings
    clock: Clock
    rng: random.Random
    staging_dir: Path
    probe: Callable[[Path], AudioProbe]
    on_progress: ProgressHook | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    credits: CreditBook = field(default_factory=CreditBook)  # filed jobs wanting their credits

    def progress(self, job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        hook = self.on_progress
        if hook is None:
            return
        try:
            hook(job_id, kind, data)
        except Exception:  # a broken display must not break a job
            log.exception("progress hook failed", job_id=job_id, kind=kind)

    def client_for(self, job: Job) -> MvsepClient:
        """The client of the MVSEP host ``job`` lives on: the one its submit intent journaled
        (a job's files are served only by the region that created it), even when the
        configured ``base_url`` changed since; the configured one for a job journaled
        before hosts were stored. Same pool, pacer and token either way."""
        url = job.base_url
        return self.client if url is None else self.client.with_base_url(url)

    def check_abort(self) -> None:
        if self.stopping.is_set():
            raise Aborted("engine stopping")


def journal_intact(ctx: Context) -> bool:
    """False once the journal was deleted or replaced under the engine: then the engine stops
    taking work and the client sends nothing more (a person must look; the service exits
    with code 2). The scheduler asks before every pass."""
    try:
        ctx.journal.check_intact()
    except JournalGoneError as exc:
        if not ctx.stopping.is_set():
            log.error("journal deleted or replaced; the engine stops", error=str(exc))
        ctx.stopping.set()
        ctx.client.interrupt()
        return False
    return True


def ids(job: Job) -> dict[str, object]:
    """What every job log line carries."""
    return {"job_id": job.id, "file": str(job.source.path)}


def record_error(ctx: Context, job: Job, exc: BaseException, *, step: Step) -> Job:
    """Journal where ``job`` goes after ``exc`` in ``step`` (see :func:`retry.decide`)."""
    now = ctx.clock.time()
    decision = retry.decide(
        exc,
        step=step,
        attempts=job.attempts,
        first_error_at=job.first_error_at,
        now=now,
        policy=ctx.settings.retry_policy,
        rng=ctx.rng,
    )
    if decision.state is JobState.FAILED:
        return dispose.fail(ctx, job, decision.reason)
    if decision.state is JobState.READY:  # expired at MVSEP, resubmit_expired on
        log.warning("result expired at MVSEP; submitting again", **ids(job))
        return ctx.journal.mark_expired(job.id, decision.reason)
    if decision.state is JobState.RETRY_WAIT:
        return ctx.journal.mark_deferred(
            job.id, due_at=now + decision.delay_s, error=decision.reason, resume=decision.resume
        )
    raise AssertionError(f"record_error: {decision} is for the step to act on")  # a bug


def wait_for_missing_folder(
    ctx: Context, job: Job, reason: str, *, resume: JobState | None = None
) -> Job:
    """Defer a job whose inbox or output folder is missing (an unmounted share, a NAS
    rebooting): never cancelled or failed for it. It looks again after
    ``missing_inbox_recheck_s``, doubling up to 5 minutes so that a share away for days does
    not fill the journal; the warning is logged once, not at every look."""
    recheck_s = ctx.settings.missing_inbox_recheck_s
    looks = 1 + _looks_so_far(ctx, job, reason)  # a look is not an attempt (``recheck``)
    delay = retry.backoff_delay_s(looks, base_s=recheck_s, cap_s=max(recheck_s, 300.0), rng=ctx.rng)
    if job.last_error != reason:
        log.warning("job waits for a missing folder", **ids(job), reason=reason)
    return ctx.journal.mark_deferred(
        job.id, due_at=ctx.clock.time() + delay, error=reason, resume=resume, recheck=True
    )


def _looks_so_far(ctx: Context, job: Job, reason: str) -> int:
    """Deferrals for ``reason`` in the job's latest run of deferrals and resumptions."""
    if job.last_error != reason:
        return 0
    looks = 0
    for event in reversed(ctx.journal.events(job.id, limit=1_000_000)):
        if event.kind not in ("deferred", "resumed") or (
            event.kind == "deferred" and event.reason != reason
        ):
            break
        looks += event.kind == "deferred"
    return looks
