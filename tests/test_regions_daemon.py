"""Regions through the engine: a job keeps the MVSEP host that created it (issue 7, point 6).

A job is created via one host, the engine stops while MVSEP works on it (or before a lost
create answer was reconciled), the configured ``base_url`` changes, the engine starts again:
the job is reconciled, polled, downloaded and filed from the host that created it
(journaled with the submit intent), and created once. Real
emulators over loopback; every HTTP request is recorded by an ``httpx`` event hook on the
real client's connection pool (an observer, not a mock: the requests go out unchanged).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from test_engine_rig import FAST, FAST_POLLS, Recorder
from test_engine_rig import kept_source as source

from daemon.emulator import Fault
from daemon.engine import Engine
from daemon.engine.context import Context
from daemon.jobs import JobState
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer

S = JobState
TOKEN = "region-token-0123456789"


@dataclass
class Requests:
    """Every request sent through one ``httpx.Client``: ``(port, path)``."""

    seen: list[tuple[int | None, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> None:
        self.seen.append((request.url.port, request.url.path))

    def ports(self, path_start: str) -> set[int | None]:
        return {port for port, path in self.seen if path.startswith(path_start)}


def port_of(url: str) -> int | None:
    return httpx.URL(url).port


@dataclass
class Daemon:
    """A journal + client + engine on ``tmp``, as the service composes them."""

    tmp: Path
    base_url: str
    requests: Requests = field(default_factory=Requests)
    recorder: Recorder = field(default_factory=Recorder)

    @contextmanager
    def running(self) -> Iterator[tuple[Journal, Engine]]:
        http = httpx.Client(follow_redirects=True, event_hooks={"request": [self.requests]})
        client = MvsepClient(
            base_url=self.base_url, api_token=TOKEN, http=http, gate=Pacer(), max_attempts=2
        )
        journal = Journal(self.tmp / "state" / "journal.sqlite3")
        self.recorder.journal = journal
        engine = Engine(
            journal=journal,
            client=client,
            rng=random.Random(3),
            settings=FAST,
            poll_policy=FAST_POLLS,
            on_progress=self.recorder,
        )
        try:
            yield journal, engine
        finally:
            engine.stop(timeout_s=10)
            journal.close()
            client.close()
            http.close()


def created_then_restarted(
    tmp: Path, audio: Path, *, first_url: str, then_url: str
) -> tuple[Daemon, int]:
    """Create a job via ``first_url``, stop while it is queued, restart on ``then_url`` and
    run until idle; returns the restarted daemon and the job id."""
    (tmp / "out").mkdir(exist_ok=True)
    first = Daemon(tmp, first_url)
    with first.running() as (journal, engine):
        job_id = engine.submit_file(source(tmp, audio))
        assert job_id is not None
        engine.start()
        first.recorder.wait_for(lambda: journal.get(job_id).state is S.QUEUED)
        assert journal.get(job_id).base_url == first_url
    then = Daemon(tmp, then_url)  # the config's base_url changed meanwhile
    with then.running() as (journal, engine):
        assert journal.get(job_id).state is S.QUEUED
        assert engine.run_until_idle(60)
    return then, job_id


def filed_stems(tmp: Path, job_id: int) -> list[Path]:
    with Journal(tmp / "state" / "journal.sqlite3") as journal:
        job = journal.get(job_id)
    assert job.state is S.FILED, (job.state, job.last_error)
    stems = [Path(p) for p in job.outputs]
    assert stems and all(p.is_file() and p.stat().st_size > 44 for p in stems)
    return stems


def test_a_job_keeps_its_region_when_base_url_changes(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(regions=("de", "hk"), processing_s=1.0, rate_limit=False)
    de, hk = emu.region_url("de"), emu.region_url("hk")
    audio = audio_file("in/song.wav", seconds=1.0)
    then, job_id = created_then_restarted(tmp_path, audio, first_url=de, then_url=hk)

    filed_stems(tmp_path, job_id)
    assert [view.region for view in emu.jobs.values()] == ["de"]  # exactly one create, in de
    # after the restart every call for the job went to de: polls and downloads
    assert then.requests.ports("/api/separation/get") == {port_of(de)}
    assert then.requests.ports("/storage/") == {port_of(de)}
    assert port_of(hk) not in then.requests.ports("/api/separation/")


def test_a_job_on_a_host_the_new_config_does_not_know_is_still_filed(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Two hosts that share nothing: the new one has never heard of the job (its get says
    not found, its storage 404s). Without the journaled host the job fails as expired."""
    old = make_emulator(processing_s=1.0, rate_limit=False)
    new = make_emulator(rate_limit=False)
    audio = audio_file("in/song.wav", seconds=1.0)
    then, job_id = created_then_restarted(
        tmp_path, audio, first_url=old.base_url, then_url=new.base_url
    )

    filed_stems(tmp_path, job_id)
    assert len(old.jobs) == 1 and len(new.jobs) == 0  # created once, on the old host
    assert new.stats["calls"].get("get", 0) == 0
    assert then.requests.ports("/storage/") == {port_of(old.base_url)}


def test_a_new_job_goes_to_the_configured_host_and_an_old_row_falls_back(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The host is taken at the intent (the configured one); a job without one (journaled
    before schema v2) uses the configured client."""
    emu = make_emulator(rate_limit=False)
    daemon = Daemon(tmp_path, emu.base_url)
    (tmp_path / "out").mkdir()
    with daemon.running() as (journal, engine):
        job_id = engine.submit_file(source(tmp_path, audio_file("in/a.wav", seconds=0.5)))
        assert job_id is not None and engine.run_until_idle(60)
        assert journal.get(job_id).base_url == emu.base_url
        ctx: Context = engine._ctx
        old_row = journal.get(job_id)
        assert ctx.client_for(old_row).base_url == emu.base_url
        assert ctx.client_for(dataclasses.replace(old_row, base_url=None)) is ctx.client
        other = ctx.client_for(dataclasses.replace(old_row, base_url="http://127.0.0.1:9/"))
        assert other.base_url == "http://127.0.0.1:9" and other is not ctx.client
    filed_stems(tmp_path, job_id)


def test_a_lost_create_is_reconciled_on_the_host_it_went_to(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """The create's answer is lost and the history cannot be read before the stop; after
    the restart on another host the job is looked up in the history of the host it was
    sent to. Looking on the new host would find nothing and pay for a second create."""
    old = make_emulator(processing_s=0.3, rate_limit=False)
    new = make_emulator(rate_limit=False)
    old.add_fault(Fault(kind="drop_after_create", endpoint="create"))
    old.add_fault(Fault(kind="http_5xx", endpoint="history", status=503, times=None))
    (tmp_path / "out").mkdir()
    first = Daemon(tmp_path, old.base_url)
    with first.running() as (journal, engine):
        job_id = engine.submit_file(source(tmp_path, audio_file("in/lost.wav", seconds=1.0)))
        assert job_id is not None
        engine.start()
        first.recorder.wait_for(
            lambda: (
                journal.get(job_id).resume_state is S.SUBMITTING
                and journal.get(job_id).state is S.RETRY_WAIT
            )
        )
    old.clear_faults()
    then = Daemon(tmp_path, new.base_url)
    with then.running() as (journal, engine):
        assert engine.run_until_idle(60)
    filed_stems(tmp_path, job_id)
    assert len(old.jobs) == 1 and len(new.jobs) == 0  # paid once
    assert new.stats["calls"].get("history", 0) == 0
    assert then.requests.ports("/api/app/separation_history") == {port_of(old.base_url)}
