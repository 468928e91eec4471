"""Issue 9 item 4: a ``not_found`` on ``get`` is not taken as "expired" on its word.

A real emulator over loopback, a real journal. MVSEP answers a stray ``not_found`` for a job
it has (seen two seconds after a create): the job must still be filed, with one create, with
or without ``resubmit_expired``. A job is expired only when the ``not_found`` streak is old
and consistent (``ExpiryPolicy``) and the history agrees; a result that really expired (the
emulator's ``expire_after_s``) still ends as expired.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_engine_rig import rig

from daemon.emulator import Fault
from daemon.engine.retry import ExpiryPolicy
from daemon.jobs import JobState

S = JobState
QUICK = ExpiryPolicy(min_age_s=0.5, confirmations=3, span_s=0.2)
"""The policy's shape with test-sized times (the default waits an hour after the create)."""


@pytest.mark.parametrize("resubmit", [False, True], ids=["keep", "resubmit_expired"])
def test_a_few_not_found_answers_after_the_create_are_not_an_expiry(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    resubmit: bool,
) -> None:
    emu = make_emulator(processing_s=0.3)
    emu.add_fault(Fault(kind="hash_not_found", endpoint="get", times=3))
    with rig(tmp_path, emu, resubmit_expired=resubmit) as r:
        job_id = r.submit(audio_file("in/stray.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FILED, job.last_error
        assert r.creates() == 1  # never sent a second time
        assert job.outputs and all(Path(p).is_file() for p in job.outputs)
        kinds = [e.kind for e in r.journal.events(job_id)]
        assert "expired" not in kinds and "failed" not in kinds
        assert kinds.count("poll_failed") == 3  # each not_found: a retried poll
        assert not (r.inbox / "_failed").exists()


def test_a_not_found_streak_is_not_an_expiry_while_the_history_has_the_job(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Old and consistent enough to ask (the quick policy), but the history lists the job
    with time left: the engine polls on and files it."""
    emu = make_emulator(processing_s=0.3)
    emu.add_fault(Fault(kind="hash_not_found", endpoint="get", times=8))
    with rig(tmp_path, emu, resubmit_expired=True, expiry=QUICK) as r:
        job_id = r.submit(audio_file("in/alive.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FILED, job.last_error
        assert r.creates() == 1
        assert emu.stats["calls"].get("history", 0) >= 1  # it asked, and the history said no
        assert "expired" not in [e.kind for e in r.journal.events(job_id)]


def test_a_result_that_really_expired_still_ends_as_expired(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The files stay hidden until after the emulator deleted the result (expire_after_s):
    every get then says not_found and the history says ``job_exists`` false."""
    emu = make_emulator(processing_s=0.2, expire_after_s=1.0)
    emu.add_fault(Fault(kind="done_without_files", endpoint="get", delay_s=30.0))
    with rig(tmp_path, emu, expiry=QUICK) as r:
        job_id = r.submit(audio_file("in/gone.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FAILED, job.last_error
        assert "expired at MVSEP" in (job.last_error or "")
        assert r.creates() == 1
        assert (r.inbox / "_failed" / "gone.wav.error.txt").exists()
        failed_polls = [e for e in r.journal.events(job_id) if e.kind == "poll_failed"]
        assert len(failed_polls) >= QUICK.confirmations - 1  # confirmed, not taken at once


def test_a_really_expired_result_is_sent_again_with_resubmit_expired(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.2, expire_after_s=2.0)
    emu.add_fault(Fault(kind="done_without_files", endpoint="get", delay_s=30.0))
    with rig(tmp_path, emu, resubmit_expired=True, expiry=QUICK) as r:
        job_id = r.submit(audio_file("in/again.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        job = r.job(job_id)
        assert job.state is S.FILED, job.last_error
        assert r.creates() == 2  # the expired one, and once more
        assert [e.kind for e in r.journal.events(job_id)].count("expired") == 1
