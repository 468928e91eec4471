"""Getting a job into (and out of) an MVSEP slot: creates that keep failing, a lost create
answer looked up at once, a cancel MVSEP answers "not found".

Real emulator with persistent faults, real client, journal and engine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon.clock import SystemClock
from daemon.emulator import Fault
from daemon.engine.context import Context
from daemon.engine.poll import cancel_at_mvsep
from daemon.jobs import JobState
from daemon.media import probe


def test_a_create_that_always_gets_a_5xx_fails_at_the_deadline_after_bounded_creates(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Each 5xx is outcome-unknown, then absent from the history: a failed attempt through
    the retry policy, so the deadline applies (it used to be sent again for ever)."""
    emu = make_emulator(rate_limit=False)
    emu.add_fault(Fault(kind="http_5xx", endpoint="create", status=502, times=None))
    with rig(tmp_path, emu, retry_deadline_s=1.5, reconcile_grace_s=0.2) as r:
        job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
        r.engine.start()
        job = r.wait_state(job_id, JobState.FAILED, timeout_s=30)
        creates = emu.stats["calls"]["create"]
        assert 2 <= creates <= 12, creates  # a few attempts, then the deadline
        assert job.attempts >= 2 and "did not receive the create" in (job.last_error or "")
        assert r.creates() == 0  # nothing was ever created (or charged)
        kinds = [e.kind for e in r.journal.events(job_id)]
        assert "reconciled_absent" not in kinds and kinds.count("deferred") >= 2


def test_a_lost_create_answer_is_looked_up_in_the_history_at_once(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """MVSEP created the job but the answer was lost: found in the history at once, not
    after ``reconcile_retry_s`` (issue 9 item 6); one create, no second upload."""
    emu = make_emulator(processing_s=0.2)
    emu.add_fault(Fault(kind="drop_after_create", endpoint="create", times=1))
    with rig(tmp_path, emu, reconcile_retry_s=20.0, reconcile_grace_s=60.0) as r:
        started = time.monotonic()
        job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
        r.engine.start()
        r.wait_state(job_id, JobState.QUEUED, JobState.DOWNLOADING, JobState.FILED, timeout_s=15)
        assert time.monotonic() - started < 15  # well before the 20 s retry interval
        assert r.creates() == 1 and emu.stats["calls"]["create"] == 1
        (submitted,) = [e for e in r.journal.events(job_id) if e.kind == "submitted"]
        assert "reconciled" in str(submitted.data) or submitted.reason
        assert r.engine.run_until_idle(30)
        assert r.job(job_id).state is JobState.FILED


def test_a_cancel_answered_not_found_is_a_refused_cancel(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """MVSEP answers the cancel "Separation not found" (the client raises ApiNotFound):
    nothing to cancel there, like a refused cancel; with ``on_cancel_processing="keep"``
    the request is declined and the job goes on. It used to escape the poll step."""
    emu = make_emulator(waiting_s=60.0, rate_limit=False)
    with rig(tmp_path, emu, on_cancel_processing="keep") as r:
        job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
        r.engine.start()
        r.recorder.wait_for(lambda: r.job(job_id).mvsep_status == "waiting", timeout_s=30)
        r.engine.stop()
        job = r.job(job_id)
        assert job.mvsep_hash is not None
        status = r.client.get(job.mvsep_hash)
        assert status.status == "waiting"
        emu.reset()  # MVSEP no longer knows the hash: its cancel answers "not found"
        job = r.journal.request_cancel(job_id, "the user changed their mind", processing="keep")
        ctx = Context(
            journal=r.journal,
            client=r.client,
            settings=r.settings,
            clock=SystemClock(),
            rng=random.Random(3),
            staging_dir=tmp_path / "staging",
            probe=probe,
        )
        assert cancel_at_mvsep(ctx, job, status) is True  # stays queued; no exception
        assert emu.stats["calls"].get("cancel", 0) == 1
        job = r.job(job_id)
        assert job.state is JobState.QUEUED and job.cancel_requested is None
        assert [e.kind for e in r.journal.events(job_id)][-1] == "cancel_declined"
