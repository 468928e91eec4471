"""Premium concurrency past the server's limit (issue 7 point 5): whatever MVSEP does past
its parallel limit, no job is lost, none is created twice, none fails.

``over_limit="reject"``: MVSEP answers a create past the limit with a 400 the client maps to
``ApiSlotsFull``; the engine (told 10 slots by the premium account) learns the real limit
from the refusal and sends no more until a slot frees. ``over_limit="queue"``: MVSEP takes
every create and keeps the extra jobs waiting. Real emulator, client, journal and engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_engine_rig import FAST_POLLS, rig

from daemon.jobs import JobState

FILES = 5
LIMIT = 2
# jobs of a second, polled every half second: well under the pacer's window
POLLS = replace(
    FAST_POLLS,
    min_interval_s=0.3,
    processing_unknown_s=0.3,
    processing_floor_s=0.3,
    waiting_unknown_s=0.3,
    waiting_base_s=0.3,
    max_interval_s=0.6,
)


def _run(tmp: Path, emu: Any, audio_file: Callable[..., Path]) -> tuple[int | None, dict[int, int]]:
    with rig(tmp, emu, poll_policy=POLLS, slots_full_retry_s=0.2) as r:
        ids = [r.submit(audio_file(f"in/{n}.wav", seconds=0.5 + n / 100)) for n in range(FILES)]
        assert r.engine.run_until_idle(90)
        jobs = [r.job(job_id) for job_id in ids]
        for job in jobs:
            assert job.state is JobState.FILED, job.last_error
            assert len(job.outputs) == 2
        stats = emu.stats
        assert stats["creates_accepted"] == len(emu.jobs) == FILES  # none lost, none twice
        names = sorted(job.upload_name for job in emu.jobs.values())
        assert len(set(names)) == FILES
        assert {h for job in jobs if (h := job.mvsep_hash)} == set(emu.jobs)
        refusals: dict[int, int] = {}
        for event in r.journal.events():
            if "ApiSlotsFull" in event.reason:
                refusals[event.job_id] = refusals.get(event.job_id, 0) + 1
        return r.engine.slots, refusals


def test_past_the_limit_a_rejecting_server_teaches_the_slot_count(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(
        premium=True, processing_s=1.0, parallel_limit=LIMIT, over_limit="reject", rate_limit=False
    )
    slots, refusals = _run(tmp_path, emu, audio_file)
    # Learnt from what the server did, not the premium 10. Each refusal bounds the limit by
    # the jobs we count in flight then, which can be more than MVSEP's (a job it finished that
    # we have not polled yet, another upload being refused at the same moment): the lowest
    # bound stands, never below the real limit.
    assert slots is not None and LIMIT <= slots < 10, slots
    assert refusals, "the server never refused: the test did not reach the limit"
    assert emu.stats["creates_rejected"] <= 3 * 3  # 3 attempts of max_transfers uploads


@pytest.mark.parametrize("limit", [1, LIMIT])
def test_past_the_limit_a_queueing_server_holds_the_jobs_and_all_are_filed(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path], limit: int
) -> None:
    emu = make_emulator(
        premium=True, processing_s=0.5, parallel_limit=limit, over_limit="queue", rate_limit=False
    )
    slots, refusals = _run(tmp_path, emu, audio_file)
    assert refusals == {}
    assert slots == 10  # nothing was refused: the premium count stays
    assert emu.stats["creates_rejected"] == 0
