"""Getting a job into (and out of) an MVSEP slot: creates that keep failing, a lost create
answer looked up at once, a cancel MVSEP answers "not found".

Real emulator with persistent faults, real client, journal and engine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon.clock import SystemClock
from daemon.emulator import Fault
from daemon.engine import prepare, submit
from daemon.engine.context import Context
from daemon.engine.poll import cancel_at_mvsep
from daemon.jobs import Job, JobState
from daemon.media import probe
from daemon.mvsep.models import HistoryEntry


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


def _ctx(r: Any, tmp: Path) -> Context:
    return Context(
        journal=r.journal,
        client=r.client,
        settings=r.settings,
        clock=SystemClock(),
        rng=random.Random(5),
        staging_dir=tmp / "staging",
        probe=probe,
    )


def _submitting(r: Any, ctx: Context, path: Path) -> Job:
    """A job journaled as ``submitting`` (prepared, intent written), not sent yet."""
    job_id = r.submit(path)
    prepare.prepare(ctx, r.job(job_id))
    job = r.journal.claim_next_ready(submit.new_nonce)
    assert job is not None and job.id == job_id and job.state is JobState.SUBMITTING
    return job


def test_an_upload_cut_short_by_a_stop_stays_submitting_for_the_restart(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        ctx = _ctx(r, tmp_path)
        job = _submitting(r, ctx, audio_file("in/a.wav", seconds=1.0))
        ctx.stopping.set()  # the engine is stopping: the first progress callback aborts
        assert submit.upload(ctx, job) is submit.Upload.STOPPED
        assert r.job(job.id).state is JobState.SUBMITTING and emu.jobs == {}


def test_an_input_removed_before_its_upload_is_never_sent(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        ctx = _ctx(r, tmp_path)
        removed = _submitting(r, ctx, audio_file("in/a.wav", seconds=0.5))
        removed.source.path.unlink()  # the file alone: its owner took it back
        assert submit.upload(ctx, removed) is submit.Upload.NOT_SENT
        job = r.job(removed.id)
        assert job.state is JobState.FAILED and "disappeared" in (job.last_error or "")
        share = _submitting(r, ctx, audio_file("in/b.wav", seconds=0.5))
        for path in r.inbox.iterdir():
            path.unlink()
        r.inbox.rmdir()  # the whole inbox: an unmounted share, the job waits for it
        assert submit.upload(ctx, share) is submit.Upload.NOT_SENT
        job = r.job(share.id)
        assert job.state is JobState.RETRY_WAIT and job.resume_state is JobState.READY
        assert emu.stats["calls"].get("create", 0) == 0


def test_a_cancelled_job_whose_create_never_arrived_is_cancelled_on_reconcile(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu, reconcile_grace_s=0.0) as r:
        ctx = _ctx(r, tmp_path)
        job = _submitting(r, ctx, audio_file("in/a.wav", seconds=0.5))  # its answer was lost
        job = r.journal.request_cancel(job.id, "removed", processing="discard")
        assert job.cancel_requested == "removed"
        assert submit.reconcile(ctx, job) is None
        job = r.job(job.id)
        assert job.state is JobState.CANCELLED and job.attempts == 0  # no failed attempt


def test_the_history_is_searched_page_by_page_and_no_further_back_than_needed(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, rate_limit=False)
    song = audio_file("in/a.wav", seconds=0.2)
    with rig(tmp_path, emu) as r:
        ctx = _ctx(r, tmp_path)
        old_nonce = submit.new_nonce()
        sent_at = time.time()
        names = [f"{old_nonce}-a.wav"] + [f"{submit.new_nonce()}-a.wav" for _ in range(20)]
        for name in names:  # the one looked for, then a full page of newer ones
            r.client.create(sep_type=40, output_format=1, file=song, upload_name=name)
        found = submit.find_in_history(ctx, old_nonce, sent_at, r.client)
        assert found is not None and old_nonce in found.hash  # on the second page
        pages = emu.stats["calls"]["history"]
        assert pages == 2
        # an intent two days later: the first page already goes back further than the
        # margin (a day), so the second is not read
        assert submit.find_in_history(ctx, "000000000000", sent_at + 2 * 86400, r.client) is None
        assert emu.stats["calls"]["history"] == pages + 1
        # an intent within the margin of both pages: read to the end, not there
        assert submit.find_in_history(ctx, "000000000000", sent_at, r.client) is None


def test_history_times_that_cannot_be_read_do_not_end_the_search() -> None:
    assert submit.entry_time(HistoryEntry(hash="h", job_exists=True)) is None
    assert submit.entry_time(HistoryEntry(hash="h", job_exists=True, created_at="soon")) is None
    stamp = submit.entry_time(
        HistoryEntry(hash="h", job_exists=True, created_at="2026-01-02 03:04:05")
    )
    assert stamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
