"""Job lifecycle in the emulator: phases, chunks, late files, expiry, cancel, limits, urls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.testing import ManualClock, create, finished, get, status_in, wait_for

Factory = Callable[..., Any]


@pytest.fixture
def short_song(audio_file: Callable[..., Path]) -> Path:
    return audio_file("short.wav", seconds=1.0, sample_rate=8000, channels=1)


def _user(client: httpx.Client, token: str = "test-token") -> dict[str, Any]:
    data: dict[str, Any] = client.get("/api/app/user", params={"api_token": token}).json()["data"]
    return data


@pytest.fixture
def clocked() -> Iterator[Callable[..., tuple[Any, ManualClock]]]:
    """Start an emulator on a manual clock: ``server, clock = clocked(processing_s=10)``."""
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


def test_waiting_processing_done(clocked: Callable[..., Any], short_song: Path) -> None:
    server, clock = clocked(waiting_s=10, processing_s=10)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, short_song, sep_type=40).json()["data"]["hash"]
        waiting = get(c, job_hash)
        assert waiting == {
            "success": True,
            "status": "waiting",
            "data": {"message": waiting["data"]["message"], "queue_count": 1, "current_order": 1},
        }
        clock.advance(10)
        assert get(c, job_hash)["status"] == "processing"
        assert server.jobs[job_hash].state == "processing"
        clock.advance(10)
        assert wait_for(c, job_hash, finished)["status"] == "done"
    assert server.jobs[job_hash].state == "done"


def test_real_clock_timings(make_emulator: Factory, short_song: Path) -> None:
    server = make_emulator(processing_s=0.5, processing_jitter_s=0.2, rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        started = time.monotonic()
        job_hash = create(c, short_song, sep_type=40).json()["data"]["hash"]
        wait_for(c, job_hash, finished)
    assert time.monotonic() - started >= 0.3


def test_long_input_is_distributed_in_chunks(
    clocked: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    song = audio_file("long.wav", seconds=2.0, sample_rate=8000, channels=1)
    server, clock = clocked(chunk_seconds=0.5, processing_s=10)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        clock.advance(10)
        first = get(c, job_hash)
        assert first["status"] == "distributing"
        assert (first["data"]["finished_chunks"], first["data"]["all_chunks"]) == (0, 4)
        clock.advance(5)
        assert get(c, job_hash)["data"]["finished_chunks"] == 2
        clock.advance(5)
        assert wait_for(c, job_hash, finished)["status"] == "done"


def test_done_reports_files_only_after_files_delay(
    clocked: Callable[..., Any], short_song: Path
) -> None:
    server, clock = clocked(files_delay_s=10)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, short_song, sep_type=40).json()["data"]["hash"]
        early = wait_for(c, job_hash, status_in("done"))
        assert early["data"]["files"] == []
        clock.advance(10)
        late = get(c, job_hash)
    assert [f["type"] for f in late["data"]["files"]] == ["Vocals", "Instrumental"]
    assert all(f["url"] for f in late["data"]["files"])


def test_results_expire(clocked: Callable[..., Any], short_song: Path) -> None:
    server, clock = clocked(expire_after_s=100)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, short_song, sep_type=40).json()["data"]["hash"]
        done = wait_for(c, job_hash, finished)
        clock.advance(101)
        gone = get(c, job_hash)
        assert gone["success"] is False and gone["status"] == "not_found"
        assert gone["data"]["message"]
        assert c.get(done["data"]["files"][0]["url"]).status_code == 404
        history = c.get("/api/app/separation_history", params={"api_token": "test-token"})
    entry = history.json()["data"][0]
    assert entry["job_exists"] is False and entry["credits"] is None and entry["time_left"] < 0


def test_cancel_refunds_a_waiting_job_only(make_emulator: Factory, short_song: Path) -> None:
    server = make_emulator(premium=True, waiting_s=30, rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        before = _user(c)["premium_minutes"]
        job_hash = create(c, short_song, sep_type=28).json()["data"]["hash"]
        assert _user(c)["premium_minutes"] == before - 1  # floor(1 s * 4 / 60) -> at least 1
        assert server.jobs[job_hash].credits == 1
        answer = c.post(
            "/api/separation/cancel", data={"api_token": "test-token", "hash": job_hash}
        )
        assert answer.json() == {"success": True, "data": {"message": "Cancelled"}}
        assert _user(c)["premium_minutes"] == before
        assert server.jobs[job_hash].state == "cancelled"
    assert server.stats["cancels"] == 1


def test_cancel_of_a_processing_job_fails_and_it_keeps_running(
    clocked: Callable[..., Any], short_song: Path
) -> None:
    server, clock = clocked(processing_s=10)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, short_song, sep_type=40).json()["data"]["hash"]
        assert get(c, job_hash)["status"] == "processing"
        answer = c.post(
            "/api/separation/cancel", data={"api_token": "test-token", "hash": job_hash}
        )
        assert answer.json()["success"] is False and answer.json()["data"]["message"]
        clock.advance(10)
        assert wait_for(c, job_hash, finished)["status"] == "done"


def test_premium_credits_follow_duration_and_price(
    make_emulator: Factory, audio_file: Callable[..., Path]
) -> None:
    song = audio_file("two-minutes.wav", seconds=125.0, sample_rate=2000, channels=1)
    server = make_emulator(premium=True, rate_limit=False, premium_minutes=100)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=28).json()["data"]["hash"]  # price 4
        assert _user(c)["premium_minutes"] == 100 - 8  # floor(125 * 4 / 60)
    assert server.jobs[job_hash].credits == 8


def test_free_account_runs_one_job_at_a_time(clocked: Callable[..., Any], short_song: Path) -> None:
    server, clock = clocked(processing_s=10)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        first = create(c, short_song, sep_type=40)
        second = create(c, short_song, sep_type=40)
        assert second.status_code == 400
        assert "parallel" in second.json()["errors"][0]
        assert _user(c)["current_queue"] == 1
        clock.advance(10)
        wait_for(c, first.json()["data"]["hash"], finished)
        assert create(c, short_song, sep_type=40).status_code == 200
    assert server.stats["creates_rejected"] == 1


def test_premium_account_runs_ten(make_emulator: Factory, audio_file: Callable[..., Path]) -> None:
    tiny = audio_file("tiny.wav", seconds=0.2, sample_rate=8000, channels=1)
    server = make_emulator(premium=True, waiting_s=60, rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        codes = [create(c, tiny, sep_type=40).status_code for _ in range(10)]
        assert codes == [200] * 10
        over = create(c, tiny, sep_type=40)
        assert over.status_code == 400 and "(10)" in over.json()["errors"][0]
        other = create(c, tiny, sep_type=40, token="another-account")
        assert other.status_code == 200


def test_parallel_limit_option(make_emulator: Factory, short_song: Path) -> None:
    server = make_emulator(parallel_limit=2, waiting_s=60, rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        codes = [create(c, short_song, sep_type=40).status_code for _ in range(3)]
    assert codes == [200, 200, 400]


def test_non_audio_upload_is_accepted_then_fails(make_emulator: Factory, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not audio\n" * 100)
    server = make_emulator(rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        answer = create(c, junk, sep_type=40)
        assert answer.status_code == 200
        failed = wait_for(c, answer.json()["data"]["hash"], status_in("failed"))
    assert failed["success"] is True and "audio" in failed["data"]["message"]


def test_url_job_from_loopback(make_emulator: Factory, short_song: Path) -> None:
    server = make_emulator(rate_limit=False, parallel_limit=5)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        upload = create(c, short_song, sep_type=40).json()["data"]["hash"]
        source = wait_for(c, upload, finished)["data"]["input_file"]["url"]
        answer = create(c, None, sep_type=20, url=source, remote_type="direct")
        assert answer.status_code == 200, answer.text
        job_hash = answer.json()["data"]["hash"]
        deadline = time.monotonic() + 10
        remote = c.get("/api/separation/get-remote", params={"hash": job_hash}).json()
        while remote["status"] != "done":
            assert remote["status"] == "waiting" and time.monotonic() < deadline
            time.sleep(0.02)
            remote = c.get("/api/separation/get-remote", params={"hash": job_hash}).json()
        assert remote["data"]["hash"] == job_hash
        done = wait_for(c, remote["data"]["hash"], finished)
    assert len(done["data"]["files"]) == 4
    assert server.jobs[job_hash].source_url == source


def test_url_job_to_another_address_fails_without_fetching(make_emulator: Factory) -> None:
    server = make_emulator(rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        answer = create(c, None, sep_type=40, url="http://192.0.2.1/song.mp3")
        job_hash = answer.json()["data"]["hash"]
        failed = wait_for(c, job_hash, status_in("failed"))
        remote = c.get("/api/separation/get-remote", params={"hash": job_hash}).json()
    assert "loopback" in failed["data"]["message"]
    assert remote["status"] == "failed"
    assert job_hash.endswith("-song.mp3")


def test_create_needs_exactly_one_source(make_emulator: Factory, short_song: Path) -> None:
    server = make_emulator(rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        neither = create(c, None, sep_type=40)
        both = create(c, short_song, sep_type=40, url="http://127.0.0.1:1/x.wav")
    assert neither.status_code == both.status_code == 400


def test_reset_forgets_everything(make_emulator: Factory, short_song: Path) -> None:
    server = make_emulator(rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        create(c, short_song, sep_type=40)
        assert server.jobs and server.stats["creates_accepted"] == 1
        assert c.post("/_emulator/reset").json() == {"success": True}
        assert c.get("/_emulator/stats").json()["creates_accepted"] == 0
    assert server.jobs == {}
