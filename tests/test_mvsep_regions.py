"""Regions: ``MvsepClient.with_base_url`` keeps a job on the host that created it.

Two real emulators over loopback stand for two MVSEP regions (the emulator's own region
support is being written at the same time; two independent servers are the same thing from
the client's side: a job exists on one host only and its files are served from there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import ApiNotFound, Stopping
from daemon.mvsep import MvsepClient

pytest.importorskip("daemon.emulator.server", reason="the emulator is not available")

TOKEN = "region-token-0123456789"
SEP_TYPE = 40
Emu = Any


class CountingGate:
    """A gate that records every request kind, and the route of every answer."""

    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.observed: list[str | None] = []
        self.closed = False

    def acquire(self, kind: str) -> None:
        if self.closed:
            raise Stopping("closed")
        self.acquired.append(kind)

    def observe(
        self,
        limit: int | None,
        remaining: int | None,
        retry_after_s: float | None,
        *,
        route: str | None = None,
    ) -> None:
        self.observed.append(route)

    def close(self) -> None:
        self.closed = True


def wait_done(client: MvsepClient, job_hash: str, deadline_s: float = 60.0) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status = client.get(job_hash)
        if status.is_finished or status.is_failed:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_hash} did not finish")


def test_a_job_stays_on_the_host_that_created_it(
    make_emulator: Callable[..., Emu], audio_file: Callable[..., Path], tmp_path: Path
) -> None:
    home = make_emulator(premium=True, rate_limit=False)
    region = make_emulator(premium=True, rate_limit=False)
    gate = CountingGate()
    audio = audio_file("song.wav", seconds=1.0)
    with MvsepClient(base_url=home.base_url + "/", api_token=TOKEN, gate=gate) as client:
        assert client.with_base_url(home.base_url) is client  # same host: the same client
        there = client.with_base_url(region.base_url + "/")
        assert there.base_url == region.base_url and client.base_url == home.base_url
        assert there._http is client._http  # one connection pool for every host
        assert TOKEN not in repr(there)

        job = there.create(sep_type=SEP_TYPE, output_format=1, file=audio).hash
        assert job in region.jobs and job not in home.jobs
        with pytest.raises(ApiNotFound):
            client.get(job)  # the home host does not know it
        status = wait_done(there, job)
        assert status.is_finished
        for stem in status.files:
            dest = tmp_path / "out" / (stem.download or stem.type)
            assert there.download(stem.url, dest) == dest.stat().st_size > 44
        assert region.stats["calls"].get("create", 0) == 1
        assert home.stats["calls"].get("create", 0) == 0
        # one gate paces both hosts; each answer names its route
        assert gate.acquired.count("create") == 1 and "get" in gate.acquired
        assert set(gate.observed) == {"create", "get"}

        there.close()  # a sibling never closes the shared pool
        assert not client._http.is_closed
        client.user()
    assert client._http.is_closed  # the origin closes it


def test_interrupt_reaches_every_sibling(make_emulator: Callable[..., Emu]) -> None:
    home = make_emulator(premium=True, rate_limit=False)
    region = make_emulator(premium=True, rate_limit=False)
    gate = CountingGate()
    with MvsepClient(base_url=home.base_url, api_token=TOKEN, gate=gate) as client:
        there = client.with_base_url(region.base_url)
        there.user()
        client.interrupt()
        with pytest.raises(Stopping):
            there.user()
        with pytest.raises(Stopping):
            client.with_base_url(region.base_url + "/x").user()  # made after the interrupt
    assert region.stats["calls"].get("user", 0) == 1 and gate.closed
