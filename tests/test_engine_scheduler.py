"""The scheduler's pass, ``Engine.tick(now)``, driven by a manual clock: no thread, no
sleeping. A real SQLite journal; the client is never called (no step is dispatched before
``start()`` made a worker pool)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.clock import ManualClock
from daemon.engine import Engine
from daemon.jobs import JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now=100.0)


@pytest.fixture
def engine(tmp_path: Path, clock: ManualClock) -> Iterator[Engine]:
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    # Never contacted: nothing is dispatched without start(). Loopback, a closed port.
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")
    try:
        yield Engine(journal=journal, client=client, clock=clock)
    finally:
        journal.close()
        client.close()


def song(tmp_path: Path) -> SourceFile:
    path = tmp_path / "in" / "a.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return SourceFile(
        path=path,
        inbox="main",
        relative_path="a.wav",
        preset="vocals",
        request=JobRequest(40, {}, 2, "BS Roformer"),
        output_dir=tmp_path / "out",
        output_template="{name}/{stem}.{ext}",
        failed_dir=tmp_path / "in" / "_failed",
    )


def test_tick_reports_when_a_waiting_job_is_due_and_resumes_it_then(
    tmp_path: Path, engine: Engine, clock: ManualClock
) -> None:
    job_id = engine.submit_file(song(tmp_path))
    assert job_id is not None
    engine.journal.mark_deferred(job_id, due_at=clock.time() + 12.0, error="ApiServerError: 503")
    assert engine.tick(clock.monotonic()) == pytest.approx(12.0)
    assert engine.journal.get(job_id).state is JobState.RETRY_WAIT
    clock.advance(11.0)
    assert engine.tick(clock.monotonic()) == pytest.approx(1.0)
    clock.advance(1.0)
    assert engine.tick(clock.monotonic()) == 0.0
    assert engine.journal.get(job_id).state is JobState.READY


def test_tick_with_nothing_to_do_waits_at_most_the_safety_interval(engine: Engine) -> None:
    assert engine.tick(0.0) == 30.0
    assert engine.in_flight() == {}


def test_an_engine_whose_journal_is_closed_under_it_stops_instead_of_spinning(
    tmp_path: Path, make_emulator: Callable[..., Any], clock: ManualClock
) -> None:
    # Before, the scheduler logged "scheduler pass failed; retrying" with a traceback every
    # error pause, forever, once its journal was closed while it ran.
    emu = make_emulator(rate_limit=False)
    journal = Journal(tmp_path / "journal.sqlite3")
    with MvsepClient(base_url=emu.base_url, api_token="t0ken-x") as client:
        engine = Engine(journal=journal, client=client)
        engine.start()
        assert engine.run_until_idle(10)
        journal.close()
        engine.wake()
        thread = engine._thread  # the scheduler thread itself is what must end
        assert thread is not None
        thread.join(timeout=10)
        assert not thread.is_alive()
        engine.stop(timeout_s=5)
