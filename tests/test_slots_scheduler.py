"""The scheduler around the slots: what it does when a step goes wrong, when it is stopped,
and when a cancel arrives while a job waits to be sent again.

Real emulator, client, journal and engine. The one stand-in is an input probe that fails or
waits once on purpose (a bug or a slow disk cannot be had on demand); it then calls the real
``daemon.media.probe``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until
from structlog.testing import capture_logs
from test_engine_rig import FAST_POLLS, rig

from daemon import media
from daemon.clock import ManualClock
from daemon.engine import Engine
from daemon.errors import Stopping
from daemon.jobs import Job, JobState
from daemon.journal import Journal
from daemon.media import AudioProbe
from daemon.mvsep.client import MvsepClient
from tests.test_engine_scheduler import song


class OnceThen:
    """A probe that does ``first`` on its first call, then the real probe."""

    def __init__(self, first: Callable[[Path], None]) -> None:
        self._first: Callable[[Path], None] | None = first

    def __call__(self, path: Path) -> AudioProbe:
        first, self._first = self._first, None
        if first is not None:
            first(path)
        return media.probe(path)


def _engine_with(r: Any, probe: Callable[[Path], AudioProbe]) -> Engine:
    return Engine(
        journal=r.journal,
        client=r.client,
        settings=r.settings,
        poll_policy=FAST_POLLS,
        probe=probe,
        on_progress=r.recorder,
    )


def _boom(path: Path) -> None:
    raise RuntimeError("a bug in a step")


def test_a_step_that_raises_unexpectedly_pauses_the_job_then_runs_again(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(rate_limit=False)
    with rig(tmp_path, emu) as r:
        r.engine = _engine_with(r, OnceThen(_boom))
        with capture_logs() as logs:
            job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
            assert r.engine.run_until_idle(60)
        assert r.job(job_id).state is JobState.FILED
        failed = [e for e in logs if e["event"] == "job step failed unexpectedly"]
        assert len(failed) == 1 and failed[0]["step"] == "prepare"
        assert failed[0]["log_level"] == "error" and failed[0]["job_id"] == job_id


def test_a_step_outrun_by_a_cancel_is_not_a_failure(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(rate_limit=False)
    entered, release = threading.Event(), threading.Event()

    def hold(path: Path) -> None:
        entered.set()
        assert release.wait(30)

    with rig(tmp_path, emu) as r:
        r.engine = _engine_with(r, OnceThen(hold))
        with capture_logs() as logs:
            job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
            r.engine.start()
            assert entered.wait(30)  # prepare is running
            r.engine.cancel_job(job_id, "the user changed their mind")
            release.set()
            assert r.engine.run_until_idle(30)
        assert r.job(job_id).state is JobState.CANCELLED
        events = [e["event"] for e in logs]
        assert "job step outrun by a cancel" in events
        assert "job step failed unexpectedly" not in events
        assert emu.jobs == {}


def test_a_step_stopped_leaves_the_job_where_it_resumes(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(rate_limit=False)

    def stopped(path: Path) -> None:
        raise Stopping("the process is stopping")

    with rig(tmp_path, emu) as r:
        r.engine = _engine_with(r, OnceThen(stopped))
        with capture_logs() as logs:
            job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
            assert r.engine.run_until_idle(60)  # the next pass prepares it again
        assert r.job(job_id).state is JobState.FILED
        assert [
            e["step"] for e in logs if e["event"] == "job step stopped; resumes on restart"
        ] == ["prepare"]


def test_run_until_idle_gives_up_after_its_timeout(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(waiting_s=60.0, rate_limit=False)
    with rig(tmp_path, emu) as r:
        job_id = r.submit(audio_file("in/a.wav", seconds=0.5))
        assert r.engine.run_until_idle(1.0) is False
        assert r.job(job_id).state is JobState.QUEUED


def test_an_engine_whose_client_is_stopping_starts_on_the_provisional_count(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator(premium=True)
    with rig(tmp_path, emu) as r:
        r.client.interrupt()  # the process is stopping: nothing more is sent
        r.engine.start()
        wait_until(lambda: r.engine.slots is not None, "the engine to start")
        assert r.engine.slots == 1 and not r.engine.slots_known
        assert emu.stats["calls"].get("user", 0) == 0


def test_both_journal_listeners_hear_every_change(tmp_path: Path) -> None:
    heard: list[tuple[int, str]] = []
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.on_change = lambda job, kind, reason: heard.append((job.id, kind))
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")  # never called
    try:
        engine = Engine(journal=journal, client=client)
        job_id = engine.submit_file(song(tmp_path))
        assert job_id is not None
        engine.cancel_job(job_id, "not wanted")
        assert heard == [(job_id, "seen"), (job_id, "cancelled")]
        assert journal.get(job_id).state is JobState.CANCELLED
    finally:
        journal.close()
        client.close()


def test_a_cancel_requested_while_submitting_is_honoured_when_it_is_ready_again(
    tmp_path: Path,
) -> None:
    """Cancelled while its create was on the way; the create turned out not sent (a 5xx
    before the upload began): back in ``ready`` the request is honoured, nothing is sent.
    Driven by ``tick(now)`` on a manual clock (no worker pool: nothing is dispatched)."""
    clock = ManualClock(now=100.0)
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")  # never called
    try:
        engine = Engine(journal=journal, client=client, clock=clock)
        job_id = engine.submit_file(song(tmp_path))
        assert job_id is not None
        journal.mark_prepared(job_id, "ab" * 32, None)
        claimed = journal.claim_next_ready(lambda: "0123456789ab")
        assert claimed is not None and claimed.id == job_id
        job: Job = journal.request_cancel(job_id, "removed", processing="discard")
        assert job.state is JobState.SUBMITTING and job.cancel_requested == "removed"
        journal.mark_deferred(
            job_id, due_at=clock.time() + 1.0, error="ApiServerError: 503", resume=JobState.READY
        )
        clock.advance(1.0)
        engine.tick(clock.monotonic())  # due: resumed in ready, the request still there
        job = journal.get(job_id)
        assert job.state is JobState.READY and job.cancel_requested == "removed"
        engine.tick(clock.monotonic())
        assert journal.get(job_id).state is JobState.CANCELLED
    finally:
        journal.close()
        client.close()
