"""Defect 7: a poll that keeps failing keeps its backoff and its deadline across a restart.

The poll's error streak (``attempts``, ``first_error_at``, ``next_attempt_at``) is journaled
with each failed poll (``poll_failed``; the job stays ``queued``). The engine is restarted
mid-streak against a real emulator whose ``get`` never stops failing (``times=None``): the
first poll after the restart waits for the journaled due time, the attempts count on, and
the job fails at the deadline counted from the streak's first error, not from the restart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from test_engine_rig import FAST, FAST_POLLS, Recorder
from test_engine_rig import kept_source as source

from daemon.emulator import Fault
from daemon.engine import Engine, EngineSettings
from daemon.jobs import JobState
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer

S = JobState
DEADLINE_S = 5.0
SETTINGS = replace(FAST, retry_base_s=0.5, retry_cap_s=1.0, retry_deadline_s=DEADLINE_S)


class GetTimes:
    """Wall-clock send time of every ``get`` through the real client's pool."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    def __call__(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/separation/get"):
            self.sent.append(time.time())


def start(
    tmp: Path, client: MvsepClient, settings: EngineSettings
) -> tuple[Journal, Engine, Recorder]:
    journal = Journal(tmp / "state" / "journal.sqlite3")
    recorder = Recorder()
    recorder.journal = journal
    engine = Engine(
        journal=journal,
        client=client,
        rng=random.Random(5),
        settings=settings,
        poll_policy=FAST_POLLS,
        on_progress=recorder,
    )
    return journal, engine, recorder


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)  # polling a condition (the journal), not waiting a fixed time


def test_a_failing_poll_keeps_its_backoff_and_deadline_across_a_restart(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(rate_limit=False)
    emu.add_fault(Fault(kind="http_5xx", endpoint="get", status=503, times=None))
    gets = GetTimes()
    http = httpx.Client(event_hooks={"request": [gets]})
    client = MvsepClient(
        base_url=emu.base_url, api_token="t0ken-x", http=http, gate=Pacer(), max_attempts=1
    )
    (tmp_path / "out").mkdir()
    audio = audio_file("in/song.wav", seconds=0.5)
    try:
        journal, engine, _ = start(tmp_path, client, SETTINGS)
        job_id = engine.submit_file(source(tmp_path, audio))
        assert job_id is not None
        engine.start()
        wait_until(lambda: journal.get(job_id).attempts >= 4)
        engine.stop(timeout_s=10)
        before = journal.get(job_id)
        journal.close()
        assert before.state is S.QUEUED and before.first_error_at is not None
        assert before.next_attempt_at is not None and "503" in (before.last_error or "")

        restarted_at = time.time()
        gets.sent.clear()
        journal, engine, _ = start(tmp_path, client, SETTINGS)
        assert engine.run_until_idle(30)
        engine.stop(timeout_s=10)
        after = journal.get(job_id)
        failed_at = journal.events(job_id)[-1].at
        kinds = [e.kind for e in journal.events(job_id)]
        journal.close()
    finally:
        client.close()
        http.close()

    # the backoff continued: the first poll after the restart waited for the journaled time
    assert gets.sent and gets.sent[0] >= before.next_attempt_at - 0.05
    assert gets.sent[0] - restarted_at > 0.1
    # the streak continued: attempts counted on, the deadline ran from its first error
    assert after.state is S.FAILED and "MVSEP status unavailable" in (after.last_error or "")
    assert after.first_error_at == before.first_error_at
    assert f"after {after.attempts} attempts" in (after.last_error or "")
    assert after.attempts > before.attempts
    assert kinds.count("poll_failed") == after.attempts
    assert failed_at - before.first_error_at >= DEADLINE_S
    assert failed_at - restarted_at < DEADLINE_S  # not a fresh deadline from the restart
    assert len(emu.jobs) == 1


def test_a_poll_that_recovers_ends_its_streak(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(rate_limit=False, processing_s=1.5)
    emu.add_fault(Fault(kind="http_5xx", endpoint="get", status=502, times=3))
    client = MvsepClient(base_url=emu.base_url, api_token="t0ken-x", gate=Pacer(), max_attempts=1)
    (tmp_path / "out").mkdir()
    settings = replace(FAST, retry_base_s=0.05, retry_cap_s=0.1)
    try:
        journal, engine, _ = start(tmp_path, client, settings)
        job_id = engine.submit_file(source(tmp_path, audio_file("in/a.wav", seconds=0.5)))
        assert job_id is not None and engine.run_until_idle(30)
        job = journal.get(job_id)
        events = journal.events(job_id)
        engine.stop()
        journal.close()
    finally:
        client.close()
    assert job.state is S.FILED and job.attempts == 0 and job.last_error is None
    kinds = [e.kind for e in events]
    assert kinds.count("poll_failed") == 3
    after_streak = events[max(i for i, e in enumerate(events) if e.kind == "poll_failed") + 1]
    assert after_streak.kind == "status"  # the first answer after the streak ends it
