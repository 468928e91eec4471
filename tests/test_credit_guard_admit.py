"""The credit guard's journal side (``credit_guard.admit``) on a real SQLite journal with a
:class:`~daemon.clock.ManualClock`: the day's credits are the local day's (a job sent before
midnight does not count), what was sent since the account read comes off its credits left,
and held jobs are released once the guard is off (no limit any more, or a free plan).

The account read is the real :class:`~daemon.engine.slots.Slots` given a function that
answers a fixed ``UserInfo`` (the constructor's seam); the client is never called (a closed
loopback port).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import media
from daemon.clock import ManualClock
from daemon.engine import EngineSettings
from daemon.engine.context import Context
from daemon.engine.credit_guard import CREDITS, DAY, admit, claim
from daemon.engine.slots import Slots
from daemon.jobs import Job, JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.mvsep.models import UserInfo

MIDNIGHT = dt.datetime.combine(dt.date(2026, 12, 2), dt.time()).timestamp()  # local


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    clock = ManualClock(wall_start=MIDNIGHT - 3600)  # 23:00 the day before
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")
    settings = EngineSettings(max_credits_per_day=5.0)
    context = Context(journal=journal, client=client, settings=settings, clock=clock,
                      rng=random.Random(5), staging_dir=tmp_path / "staging",
                      probe=media.probe)  # fmt: skip
    try:
        yield context
    finally:
        journal.close()
        client.close()


def _slots(ctx: Context, *, premium: bool = True, credits_left: float = 1000.0) -> Slots:
    user = UserInfo(premium_enabled=premium, premium_minutes=credits_left)
    slots = Slots(ctx.settings, lambda: user, rng=random.Random(1))
    slots.read(ctx.clock.monotonic())
    return slots


def _prepared(ctx: Context, name: str, credits: float) -> Job:
    path = Path("/srv/in") / name
    source = SourceFile(path=path, inbox="main", relative_path=name, preset="p",
                        request=JobRequest(48, {"add_opt1": "4"}, 1, "MelBand Roformer"),
                        output_dir=Path("/srv/out"), output_template="{name}/{stem}.{ext}",
                        failed_dir=Path("/srv/in/_failed"))  # fmt: skip
    job, _ = ctx.journal.record_seen(source, size=1, mtime=1.0)
    return ctx.journal.mark_prepared(job.id, name.encode().hex().ljust(64, "0"), credits)


def _sent(ctx: Context, job: Job, credits: float) -> None:
    claimed = claim(ctx, [job.id], exclude=set())
    assert claimed is not None and claimed.state is JobState.SUBMITTING
    ctx.journal.mark_submitted(job.id, f"hash-{job.id}", credits=credits)


def _active(ctx: Context) -> list[Job]:
    return ctx.journal.active_jobs()


def test_the_day_is_the_local_day_and_each_job_let_through_counts(ctx: Context) -> None:
    slots = _slots(ctx)
    yesterday = _prepared(ctx, "late.wav", 4.0)
    assert admit(ctx, _active(ctx), slots) == [yesterday.id]
    _sent(ctx, yesterday, 4.0)  # 23:00: yesterday's credits
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(2 * 3600)  # 01:00 the next day
    first = _prepared(ctx, "one.wav", 4.0)
    second = _prepared(ctx, "two.wav", 2.0)
    assert admit(ctx, _active(ctx), slots) == [first.id]  # 4 + 2 > 5: the second waits
    held = ctx.journal.get(second.id)
    assert held.state is JobState.HELD and (held.last_error or "").startswith(f"{DAY}:")
    assert "4 credits used today" in (held.last_error or "")  # the first one's share
    assert claim(ctx, [first.id, second.id], exclude=set()) is not None
    assert ctx.journal.get(second.id).state is JobState.HELD  # a held job is never claimed
    events = len(ctx.journal.events(second.id))
    admit(ctx, _active(ctx), slots)  # the same figures: nothing journaled again
    assert len(ctx.journal.events(second.id)) == events


def test_what_was_sent_since_the_account_read_comes_off_the_credits_left(ctx: Context) -> None:
    ctx = dataclasses.replace(ctx, settings=EngineSettings(keep_credits_at_least=5.0))
    slots = _slots(ctx, credits_left=10.0)
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(60)
    _sent(ctx, _prepared(ctx, "one.wav", 3.0), 3.0)  # 7 left now, the account still says 10
    big = _prepared(ctx, "big.wav", 3.0)
    small = _prepared(ctx, "small.wav", 2.0)
    assert admit(ctx, _active(ctx), slots) == [small.id]  # 7 − 2 = 5 may be left, 7 − 3 not
    reason = ctx.journal.get(big.id).last_error or ""
    assert reason.startswith(f"{CREDITS}:") and "7 credits left" in reason


def test_held_jobs_are_released_when_the_guard_is_off(ctx: Context) -> None:
    slots = _slots(ctx)
    jobs = [_prepared(ctx, f"{n}.wav", 3.0) for n in ("a", "b")]
    assert admit(ctx, _active(ctx), slots) == [jobs[0].id]
    assert ctx.journal.get(jobs[1].id).state is JobState.HELD
    free = _slots(ctx, premium=False)  # the plan ran out: MVSEP's own quota applies
    assert admit(ctx, _active(ctx), free) is None
    assert ctx.journal.get(jobs[1].id).state is JobState.READY
    admit(ctx, _active(ctx), slots)
    assert ctx.journal.get(jobs[1].id).state is JobState.HELD
    unlimited = dataclasses.replace(ctx, settings=EngineSettings())  # a restart without limits
    assert admit(unlimited, _active(ctx), slots) is None
    released = ctx.journal.get(jobs[1].id)
    assert released.state is JobState.READY and released.last_error is None
    assert [e.kind for e in ctx.journal.events(jobs[1].id)].count("released") == 2


def test_separate_interrupted_cancels_a_held_job_as_not_sent(ctx: Context) -> None:
    from daemon.separate import _cancel_if_not_started

    slots = _slots(ctx)
    jobs = [_prepared(ctx, f"{n}.wav", 3.0) for n in ("a", "b")]
    admit(ctx, _active(ctx), slots)
    held = ctx.journal.get(jobs[1].id)
    assert held.state is JobState.HELD
    assert _cancel_if_not_started(ctx.client, ctx.journal, held) is None  # Ctrl-C
    cancelled = ctx.journal.get(held.id)
    assert cancelled.state is JobState.CANCELLED and "not sent" in (cancelled.last_error or "")
