"""The emulator's read-only timeline for the benchmarks: each get answer and each job's times."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.testing import ManualClock, create, finished, get, wait_for


def test_get_records_and_job_times(audio_file: Callable[..., Path]) -> None:
    song = audio_file("short.wav", seconds=1.0, sample_rate=8000, channels=1)
    clock = ManualClock(start=1000.0)
    options = EmulatorOptions(processing_s=10, rate_limit=False)
    with (
        EmulatorServer(options, host="127.0.0.1", port=0, clock=clock) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as c,
    ):
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        assert get(c, job_hash)["status"] == "processing"
        clock.advance(10)
        wait_for(c, job_hash, finished)  # the DSP runs on real time; the timing is the clock's
        get(c, "no-such-hash")  # an unknown hash is not recorded
        records = server.state.get_records()
        times = server.state.job_times()
    assert records[0].hash == job_hash
    assert (records[0].at, records[0].status, records[0].files_visible) == (
        1000.0,
        "processing",
        False,
    )
    assert records[-1].status == "done" and records[-1].files_visible
    assert records[-1].at == 1010.0
    assert {r.hash for r in records} == {job_hash}
    assert len(times) == 1
    assert (times[0].hash, times[0].created, times[0].slot) == (job_hash, 1000.0, 1000.0)
    assert times[0].done == 1010.0 and times[0].processing_s == 10.0


def test_reset_forgets_the_get_log(audio_file: Callable[..., Path]) -> None:
    song = audio_file("short.wav", seconds=1.0, sample_rate=8000, channels=1)
    with (
        EmulatorServer(EmulatorOptions(rate_limit=False), host="127.0.0.1", port=0) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as c,
    ):
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        get(c, job_hash)
        assert len(server.state.get_records()) == 1
        server.state.reset()
        assert server.state.get_records() == [] and server.state.job_times() == []
