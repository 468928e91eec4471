"""The credit guard (premium accounts): no job is sent that would pass a credit limit.

* ``[credits] max_credits_per_day``: the credits of the jobs sent since local midnight (the
  history's figures, the estimate where there is none yet) plus this job's estimate may not
  pass it. A held job goes on the next local day.
* ``[credits] keep_credits_at_least``: the account's credits left (``premium_minutes``, as the
  engine's account read last saw them, less what was sent since) less this job's estimate may
  not fall below it. A held job goes on once the account shows more (credits bought): while
  a job is held for it, the account is read every ``held_recheck_s``.

Over a limit, a prepared job waits in ``held`` (nothing sent, nothing failed, not an
attempt) with the reason; it is released back to ``ready`` when the limit allows. Free
accounts: the guard is off (MVSEP's daily free quota is not in the API); held jobs are
released. An estimate that is unknown (no duration) counts as the minimum charge, 1.

:func:`decide` and :func:`plan` are PURE (the day's used credits, the estimate, the credits
left, the limits, the local date); :func:`admit` and :func:`claim` are what the scheduler
calls where a prepared job claims a slot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.engine import submit
from daemon.engine.context import Context
from daemon.engine.settings import EngineSettings
from daemon.engine.slots import Slots
from daemon.errors import IllegalTransition
from daemon.events import Held, Released
from daemon.jobs import Job, JobState

__all__ = ["CreditLimits", "Verdict", "admit", "claim", "decide", "plan"]

DAY, CREDITS = "max_credits_per_day", "keep_credits_at_least"
"""The two causes of a hold: each reason starts with the key that holds the job."""


@dataclass(frozen=True)
class CreditLimits:
    max_credits_per_day: float | None = None
    keep_credits_at_least: float | None = None

    @classmethod
    def of(cls, settings: EngineSettings) -> CreditLimits:
        return cls(settings.max_credits_per_day, settings.keep_credits_at_least)

    @property
    def any(self) -> bool:
        return self.max_credits_per_day is not None or self.keep_credits_at_least is not None


@dataclass(frozen=True)
class Verdict:
    """``hold`` None: the job may be sent; else why it is held (starts with its cause)."""

    hold: str | None = None

    @property
    def cause(self) -> str | None:
        return None if self.hold is None else self.hold.partition(":")[0]


GO = Verdict()


def decide(
    *,
    estimate: float | None,
    used_today: float,
    credits_left: float | None,
    premium: bool | None,
    limits: CreditLimits,
    today: dt.date,
) -> Verdict:
    """Whether a job estimated at ``estimate`` credits may be sent now. ``premium`` None
    (the account not read yet): the limits apply, and unknown credits left hold the job."""
    if premium is False or not limits.any:
        return GO
    cost = 1.0 if estimate is None else estimate
    day_max = limits.max_credits_per_day
    if day_max is not None and used_today + cost > day_max:
        if cost > day_max:
            return Verdict(
                f"{DAY}: this job alone (~{cost:g} credits) is over the limit of {day_max:g} "
                "a day; raise the limit to send it"
            )
        tomorrow = today + dt.timedelta(days=1)
        return Verdict(
            f"{DAY}: {used_today:g} credits used today (sent or being sent), this job "
            f"~{cost:g}, the limit {day_max:g}; it goes on tomorrow ({tomorrow.isoformat()})"
        )
    keep = limits.keep_credits_at_least
    if keep is not None and credits_left is None:
        return Verdict(f"{CREDITS}: the credits left are not known yet (the account is read again)")
    if keep is not None and credits_left is not None and credits_left - cost < keep:
        return Verdict(
            f"{CREDITS}: {credits_left:g} credits left, this job ~{cost:g} would leave fewer "
            f"than {keep:g}; it goes on when the account has more (credits bought)"
        )
    return GO


def plan(
    candidates: Sequence[tuple[int, float | None]],
    *,
    used_today: float,
    credits_left: float | None,
    premium: bool | None,
    limits: CreditLimits,
    today: dt.date,
) -> dict[int, Verdict]:
    """A verdict for each ``(job id, estimate)``, oldest first: each job let through counts
    against the limits of the ones after it (a small later job may pass a big held one)."""
    verdicts: dict[int, Verdict] = {}
    passed = 0.0
    for job_id, estimate in candidates:
        left = None if credits_left is None else credits_left - passed
        verdict = decide(estimate=estimate, used_today=used_today + passed, credits_left=left,
                         premium=premium, limits=limits, today=today)  # fmt: skip
        if verdict.hold is None:
            passed += 1.0 if estimate is None else estimate
        verdicts[job_id] = verdict
    return verdicts


def _is_candidate(job: Job) -> bool:
    if job.state is JobState.HELD:
        return True
    prepared = job.sha256 is not None and job.mvsep_hash is None
    return job.state is JobState.READY and prepared and job.cancel_requested is None


def _in_flight(jobs: Sequence[Job]) -> float:
    """Estimates of the jobs being created now (no hash yet): charged or about to be."""
    return sum(j.estimated_credits or 1.0 for j in jobs if j.holds_slot and j.mvsep_hash is None)


def _local_midnight(now: float) -> tuple[dt.date, float]:
    """The local date at ``now`` (epoch seconds) and the epoch seconds of its midnight."""
    today = dt.datetime.fromtimestamp(now).date()
    return today, dt.datetime.combine(today, dt.time()).timestamp()


def admit(ctx: Context, jobs: Sequence[Job], slots: Slots) -> list[int] | None:
    """Hold or release the prepared jobs per the limits; the ids that may be claimed, oldest
    first (None: the guard is off, any prepared job may be). Called by the scheduler before
    it claims slots, on its thread (the only one that claims)."""
    candidates = sorted((j for j in jobs if _is_candidate(j)), key=lambda j: j.id)
    limits = CreditLimits.of(ctx.settings)
    if not limits.any or slots.premium is False:
        for job in candidates:
            if job.state is JobState.HELD:
                _apply(ctx, job, Released("the credit guard is off (no limit, or a free plan)"))
        return None
    if not candidates:
        return []
    used_today, credits_left, today = _budget(ctx, jobs, slots)
    verdicts = plan([(j.id, j.estimated_credits) for j in candidates], used_today=used_today,
                    credits_left=credits_left, premium=slots.premium, limits=limits,
                    today=today)  # fmt: skip
    allowed = []
    for job in candidates:
        verdict = verdicts[job.id]
        if verdict.hold is None:
            if job.state is JobState.HELD:  # the journal's change line logs it
                _apply(ctx, job, Released("the credit limit allows it now"))
            allowed.append(job.id)
        elif job.state is JobState.READY or job.last_error != verdict.hold:
            _apply(ctx, job, Held(verdict.hold))  # held, or its reason changed (new figures)
    if any(v.cause == CREDITS for v in verdicts.values()):
        slots.want_credits(ctx.settings.held_recheck_s, ctx.clock.monotonic())
    return allowed


def _budget(ctx: Context, jobs: Sequence[Job], slots: Slots) -> tuple[float, float | None, dt.date]:
    """The day's used credits, the credits left now, and the local date (from the journal
    and the account read; what was sent since that read is taken off the credits left)."""
    now = ctx.clock.time()
    today, midnight = _local_midnight(now)
    in_flight = _in_flight(jobs)
    left = slots.credits_left
    if left is not None and slots.credits_read_at is not None:
        read_at = now - (ctx.clock.monotonic() - slots.credits_read_at)
        left -= ctx.journal.credits_since(read_at) + in_flight
    used = ctx.journal.credits_since(midnight) + in_flight
    return used, left, today


def _apply(ctx: Context, job: Job, event: Held | Released) -> bool:
    """Journal a hold or a release; False when the job changed meanwhile (a cancel)."""
    try:
        ctx.journal.apply(job.id, event)
    except IllegalTransition:
        return False
    return True


def claim(ctx: Context, allowed: list[int] | None, *, exclude: set[int]) -> Job | None:
    """Move the oldest claimable prepared job to ``submitting`` (the intent journaled
    first): any (``allowed`` None) or one the guard allowed."""
    base_url = ctx.client.base_url
    if allowed is None:
        return ctx.journal.claim_next_ready(submit.new_nonce, exclude=exclude, base_url=base_url)
    for job_id in allowed:
        if job_id in exclude:
            continue
        try:
            return ctx.journal.mark_submitting(job_id, submit.new_nonce(), base_url=base_url)
        except IllegalTransition:  # cancelled or changed since the pass read it
            continue
    return None
