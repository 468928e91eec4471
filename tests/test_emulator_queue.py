"""``over_limit``: past the parallel limit the emulator rejects (400) or queues the job."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.cli import build_parser, options_from_args
from daemon.emulator.testing import ManualClock, create, finished, get, wait_for

Clocked = Callable[..., tuple[Any, ManualClock]]


@pytest.fixture
def clocked() -> Iterator[Clocked]:
    """``server, clock = clocked(processing_s=10)``: an emulator on a manual clock."""
    started: list[EmulatorServer] = []

    def factory(**options: Any) -> tuple[Any, ManualClock]:
        clock = ManualClock()
        options.setdefault("rate_limit", False)
        server = EmulatorServer(EmulatorOptions(**options), host="127.0.0.1", port=0, clock=clock)
        started.append(server.start())
        return server, clock

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def song(audio_file: Callable[..., Path]) -> Path:
    return audio_file("song.wav", seconds=1.0, sample_rate=8000, channels=1)


def _dsp_over(server: Any, hashes: list[str]) -> None:
    """Wait until the worker threads split every job (the manual clock does not move)."""
    deadline = time.monotonic() + 30
    while not all(server.state.jobs[h].dsp_done_mono is not None for h in hashes):
        assert time.monotonic() < deadline, "the DSP never finished"
        time.sleep(0.01)


def _make(c: httpx.Client, song: Path, n: int, **fields: Any) -> list[str]:
    hashes = []
    for _ in range(n):
        answer = create(c, song, sep_type=40, **fields)
        assert answer.status_code == 200, answer.text
        assert answer.json()["success"] == "true"
        hashes.append(answer.json()["data"]["hash"])
    return hashes


def test_reject_is_the_default(clocked: Clocked, song: Path) -> None:
    server, _ = clocked(processing_s=10)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        _make(c, song, 1)
        over = create(c, song, sep_type=40)
    assert over.status_code == 400 and "parallel" in over.json()["errors"][0]


def test_queued_job_waits_with_its_place_then_runs(clocked: Clocked, song: Path) -> None:
    server, clock = clocked(processing_s=10, over_limit="queue")  # free: one slot
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        first, second, third = _make(c, song, 3)
        _dsp_over(server, [first, second, third])
        assert get(c, first)["status"] == "processing"
        for job_hash, order in ((second, 1), (third, 2)):
            body = get(c, job_hash)
            assert body["status"] == "waiting"
            assert (body["data"]["queue_count"], body["data"]["current_order"]) == (2, order)
        user = c.get("/api/app/user", params={"api_token": "test-token"}).json()["data"]
        assert user["current_queue"] == 3
        assert [server.jobs[h].queued for h in (first, second, third)] == [False, True, True]
        clock.advance(10)  # the first is done: the second takes its slot at that moment
        assert wait_for(c, first, finished)["status"] == "done"
        assert get(c, second)["status"] == "processing"
        assert get(c, third)["status"] == "waiting"
        assert get(c, third)["data"]["current_order"] == 1
        clock.advance(15)  # the second ended at +20, so the third has processed for 5 s
        assert get(c, second)["status"] == "done"
        assert get(c, third)["status"] == "processing"
        clock.advance(5)
        assert wait_for(c, third, finished)["status"] == "done"
    assert server.stats["creates_accepted"] == 3 and server.stats["creates_rejected"] == 0


def test_slots_freed_while_nobody_looked_are_granted_in_order(clocked: Clocked, song: Path) -> None:
    server, clock = clocked(processing_s=10, over_limit="queue", parallel_limit=2, premium=True)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        hashes = _make(c, song, 5)
        _dsp_over(server, hashes)
        assert [get(c, h)["status"] for h in hashes] == ["processing"] * 2 + ["waiting"] * 3
        clock.advance(25)  # +10: jobs 3 and 4 start; +20: job 5 starts, 5 s in at +25
        assert [get(c, h)["status"] for h in hashes] == ["done"] * 4 + ["processing"]
        clock.advance(5)
        assert get(c, hashes[-1])["status"] == "done"


def test_cancelling_a_queued_job_frees_its_place(clocked: Clocked, song: Path) -> None:
    server, clock = clocked(processing_s=10, over_limit="queue")
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        first, second, third = _make(c, song, 3)
        _dsp_over(server, [first, second, third])
        cancel = c.post("/api/separation/cancel", data={"api_token": "test-token", "hash": second})
        assert cancel.json()["success"] is True
        assert get(c, third)["data"]["current_order"] == 1
        clock.advance(10)
        wait_for(c, first, finished)
        assert get(c, second)["status"] == "failed"  # cancelled
        assert get(c, third)["status"] == "processing"


def test_other_accounts_are_not_held_up(clocked: Clocked, song: Path) -> None:
    server, _ = clocked(processing_s=10, over_limit="queue")
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        _make(c, song, 2)
        (other,) = _make(c, song, 1, token="another-account")
        _dsp_over(server, [other])
        assert get(c, other)["status"] == "processing"


def test_cli_over_limit_and_parallel_limit() -> None:
    parser = build_parser()
    options = options_from_args(
        parser.parse_args(["--over-limit", "queue", "--parallel-limit", "3"])
    )
    assert (options.over_limit, options.parallel_limit) == ("queue", 3)
    assert options_from_args(parser.parse_args([])).over_limit == "reject"
    with pytest.raises(SystemExit):
        parser.parse_args(["--over-limit", "sometimes"])
