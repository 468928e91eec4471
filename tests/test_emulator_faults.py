"""Injected faults, admin endpoints, fault specs and the CLI."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator import Fault, parse_fault_spec
from daemon.emulator.cli import main
from daemon.emulator.testing import create, finished, get, wait_for

Factory = Callable[..., Any]
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@pytest.fixture
def server(make_emulator: Factory) -> Any:
    return make_emulator(rate_limit=False, parallel_limit=10)


@pytest.fixture
def song(audio_file: Callable[..., Path]) -> Path:
    return audio_file("song.wav", seconds=1.0, sample_rate=8000, channels=1)


def test_http_5xx_times_and_status(server: Any, song: Path) -> None:
    server.add_fault(Fault("http_5xx", "create", times=2, status=503))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        codes = [create(c, song, sep_type=40).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert server.stats["creates_accepted"] == 1


def test_skip_lets_requests_through_first(server: Any) -> None:
    server.add_fault(Fault("http_5xx", "algorithms", skip=1, times=None))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        codes = [c.get("/api/app/algorithms").status_code for _ in range(3)]
    assert codes == [200, 500, 500]


def test_http_429_with_retry_after(server: Any) -> None:
    server.add_fault(Fault("http_429", "get", retry_after_s=7))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        limited = c.get("/api/separation/get", params={"hash": "x"})
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        assert limited.json()["success"] is False
        assert c.get("/api/separation/get", params={"hash": "x"}).status_code == 200


def test_slow(server: Any) -> None:
    server.add_fault(Fault("slow", "user", delay_s=0.5))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        started = time.monotonic()
        assert c.get("/api/app/user", params={"api_token": "t"}).status_code == 200
        assert time.monotonic() - started >= 0.5


def test_drop_upload_creates_nothing(server: Any, song: Path) -> None:
    server.add_fault(Fault("drop_upload", "create"))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        with pytest.raises(DROPPED):
            create(c, song, sep_type=40)
        assert server.jobs == {}
        assert create(c, song, sep_type=40).status_code == 200
    assert len(server.jobs) == 1


def test_drop_after_create_creates_the_job(server: Any, song: Path) -> None:
    server.add_fault(Fault("drop_after_create", "create"))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            create(c, song, sep_type=40)
        (job_hash,) = server.jobs
        history = c.get("/api/app/separation_history", params={"api_token": "test-token"})
        assert [e["hash"] for e in history.json()["data"]] == [job_hash]
        assert wait_for(c, job_hash, finished)["status"] == "done"


def test_drop_download_cuts_the_body(server: Any, song: Path) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40, output_format=1).json()["data"]["hash"]
        url = wait_for(c, job_hash, finished)["data"]["files"][0]["url"]
        server.add_fault(Fault("drop_download", "download"))
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(url)
        assert c.get(url).status_code == 200


def test_job_failed(server: Any, song: Path) -> None:
    server.add_fault(Fault("job_failed", message="GPU on fire"))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        body = wait_for(c, job_hash, lambda b: b["status"] == "failed")
    assert body["data"]["message"] == "GPU on fire"
    assert server.jobs[job_hash].state == "failed"


def test_hash_not_found(server: Any, song: Path) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        server.add_fault(Fault("hash_not_found", "get"))
        assert get(c, job_hash)["status"] == "not_found"
        assert get(c, job_hash)["status"] != "not_found"


def test_done_without_files(server: Any, song: Path) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        wait_for(c, job_hash, finished)
        server.add_fault(Fault("done_without_files", "get", delay_s=0.5))
        hidden = get(c, job_hash)
        assert hidden["status"] == "done" and hidden["data"]["files"] == []
        assert wait_for(c, job_hash, finished)["data"]["files"]


def test_admin_faults_and_stats_over_http(server: Any, song: Path) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        faults = [{"kind": "http_5xx", "endpoint": "user", "times": 1, "status": 502}]
        assert c.post("/_emulator/faults", json=faults).json() == {"success": True, "armed": 1}
        assert c.get("/_emulator/faults").json()[0]["status"] == 502
        assert c.get("/api/app/user", params={"api_token": "t"}).status_code == 502
        assert c.post("/_emulator/faults", json={"kind": "nonsense"}).status_code == 400
        stats = c.get("/_emulator/stats").json()
    assert stats["calls"]["user"] == 1 and stats["faults_fired"] == {"http_5xx": 1}
    assert server.stats["calls"] == {"user": 1}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("http_5xx:create:times=2:status=503", Fault("http_5xx", "create", times=2, status=503)),
        ("slow:get:delay_s=3:times=always", Fault("slow", "get", times=None, delay_s=3.0)),
        ("job_failed:message=boom", Fault("job_failed", message="boom")),
        ("http_429:retry_after_s=5:skip=1", Fault("http_429", retry_after_s=5.0, skip=1)),
    ],
)
def test_parse_fault_spec(spec: str, expected: Fault) -> None:
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "explode", "http_5xx:nowhere", "slow:times=0", "slow:color=red"]
)
def test_parse_fault_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_fault_spec(spec)


def test_cli_serves_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    codes: list[int] = []
    argv = [
        "--port",
        "0",
        "--premium",
        "--processing",
        "0",
        "--waiting",
        "0",
        "--fault",
        "http_5xx:algorithms:status=504",
    ]
    thread = threading.Thread(target=lambda: codes.append(main(argv, stop=stop)))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        match = None
        while match is None:
            assert time.monotonic() < deadline, "the CLI never printed its url"
            time.sleep(0.02)
            match = re.search(r"http://127\.0\.0\.1:\d+", capsys.readouterr().out)
        with httpx.Client(base_url=match.group(0), timeout=60) as c:
            assert c.get("/api/app/algorithms").status_code == 504
            user = c.get("/api/app/user", params={"api_token": "t"}).json()
            assert user["data"]["premium_enabled"] == 1
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0]


def test_cli_rejects_a_bad_fault_spec() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--fault", "nonsense"])
    assert exit_info.value.code == 2
