"""The error policy end to end: faults that never stop (``times=None``) against the real
emulator, with a short ``retry_deadline_s``, so every streak runs its whole course —
retry_wait, growing waits, the deadline, failed — instead of being absorbed by the client's
own retries. And a full account, which waits without a deadline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_engine_rig import FAST_POLLS, rig

from daemon.emulator import Fault
from daemon.jobs import JobState

S = JobState
DEADLINE_S = 1.0

# (fault, creates at the emulator, a word of the reason)
CASES = [
    (Fault(kind="http_429", endpoint="create", retry_after_s=0.1, times=None), 0, "ApiRate"),
    (Fault(kind="http_5xx", endpoint="get", status=502, times=None), 1, "status unavailable"),
    (Fault(kind="http_5xx", endpoint="download", status=500, times=None), 1, "still failing"),
    (Fault(kind="http_5xx", endpoint="history", status=500, times=None), 1, "still failing"),
    (Fault(kind="http_5xx", endpoint="history", status=400, times=None), 1, "could not check"),
    (Fault(kind="http_5xx", endpoint="download", status=404, times=None), 1, "expired"),
]


@pytest.mark.parametrize(
    ("fault", "creates", "reason"),
    CASES,
    ids=[f"{c[0].kind}-{c[0].endpoint}-{c[0].status}" for c in CASES],
)
def test_a_fault_that_never_stops_fails_the_job_at_the_deadline(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    fault: Fault,
    creates: int,
    reason: str,
) -> None:
    emu = make_emulator(processing_s=0.1)
    emu.add_fault(fault)
    if fault.endpoint == "history":  # the engine needs the history: a lost create answer
        emu.add_fault(Fault(kind="drop_after_create", endpoint="create"))
    with rig(tmp_path, emu, retry_deadline_s=DEADLINE_S, reconcile_grace_s=30.0) as r:
        job_id = r.submit(audio_file("in/f.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FAILED, (job.state, job.last_error)
        assert reason in (job.last_error or "")
        assert r.creates() == creates
        assert (r.inbox / "_failed" / "f.wav.error.txt").exists()
        if fault.status >= 500 and fault.endpoint != "get":  # a poll retries in place
            assert any(e.to_state == "retry_wait" for e in r.journal.events(job_id))


def test_filing_that_keeps_failing_waits_then_fails_at_the_deadline(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The song's output folder cannot be made (a file has its name), as on a full or
    broken disk: an OSError while filing is a retry-later error with the same deadline."""
    emu = make_emulator(processing_s=0.1)
    with rig(tmp_path, emu, retry_deadline_s=DEADLINE_S) as r:
        (r.out / "f").write_text("in the way")
        job_id = r.submit(
            audio_file("in/f.wav", seconds=0.5), output_template="{name}/{stem}.{ext}"
        )
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FAILED and "still failing" in (job.last_error or ""), job.last_error
        waits = [e for e in r.journal.events(job_id) if e.to_state == "retry_wait"]
        assert len(waits) >= 2 and all(e.from_state == "downloading" for e in waits)
        assert r.creates() == 1  # paid once, however often the filing was tried


def test_a_full_account_waits_without_a_deadline(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """MVSEP allows one job at a time but the engine was told two: the second create is
    refused as slots full once; the engine learns the limit and sends it when the first is
    done, longer than the retry deadline later, without failing it."""
    # Polls of a 5 s job at FAST_POLLS' pace would use up the pacer's window (and MVSEP's
    # 60 a minute): poll it every half second, and leave the emulator's rate limit out.
    polls = replace(
        FAST_POLLS,
        min_interval_s=0.5,
        processing_unknown_s=0.5,
        processing_floor_s=0.5,
        waiting_unknown_s=0.5,
        max_interval_s=1.0,
    )
    emu = make_emulator(processing_s=5.0, parallel_limit=1, rate_limit=False)
    with rig(tmp_path, emu, poll_policy=polls, max_parallel_jobs=2, retry_deadline_s=0.2,
             slots_full_retry_s=0.2) as r:  # fmt: skip
        ids = [r.submit(audio_file(f"in/{n}.wav", seconds=s)) for n, s in (("a", 0.5), ("b", 0.6))]
        assert r.engine.run_until_idle(60)
        for job_id in ids:
            assert r.job(job_id).state is S.FILED, r.job(job_id).last_error
        assert r.creates() == 2
        full = [e for e in r.journal.events() if "ApiSlotsFull" in e.reason]
        assert len(full) == 1 and r.engine.slots == 1  # learnt: not sent again until free
        (sent,) = [e for e in r.journal.events(full[0].job_id) if e.kind == "submitted"]
        assert sent.at - full[0].at > 0.2  # it waited longer than the deadline
