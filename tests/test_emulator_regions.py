"""Regions: regional hosts on their own ports sharing one state, and a steered entry."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator.cli import main
from daemon.emulator.regions import UnknownRegion
from daemon.emulator.testing import create, finished, wait_for

Factory = Callable[..., Any]


@pytest.fixture
def server(make_emulator: Factory) -> Any:
    return make_emulator(regions=("de", "hk"), rate_limit=False, parallel_limit=10)


@pytest.fixture
def song(audio_file: Callable[..., Path]) -> Path:
    return audio_file("song.wav", seconds=1.0, sample_rate=8000, channels=1)


def _done(base_url: str, song: Path) -> tuple[str, dict[str, Any]]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        return job_hash, wait_for(c, job_hash, finished)


def test_each_region_has_its_own_port(server: Any) -> None:
    urls = {name: server.region_url(name) for name in ("de", "hk")}
    ports = {server.port} | {int(url.rsplit(":", 1)[1]) for url in urls.values()}
    assert len(ports) == 3 and all(u.startswith("http://127.0.0.1:") for u in urls.values())
    for url in (server.base_url, *urls.values()):
        assert httpx.get(f"{url}/api/app/algorithms").status_code == 200
    assert server.steered == "de"
    with pytest.raises(UnknownRegion):
        server.region_url("us")


def test_a_job_lives_in_the_region_that_created_it(server: Any, song: Path) -> None:
    de, hk = server.region_url("de"), server.region_url("hk")
    job_hash, done = _done(hk, song)
    assert server.jobs[job_hash].region == "hk"
    urls = [f["url"] for f in done["data"]["files"]] + [done["data"]["input_file"]["url"]]
    assert all(url.startswith(hk + "/storage/") for url in urls)
    for base in (de, server.base_url):  # status from anywhere, the same answer
        body = httpx.get(f"{base}/api/separation/get", params={"hash": job_hash}).json()
        assert body["status"] == "done" and body["data"]["files"] == done["data"]["files"]
    url = done["data"]["files"][0]["url"]
    assert httpx.get(url).status_code == 200
    elsewhere = url.replace(hk, de)
    assert httpx.get(elsewhere).status_code == 404  # its files only from its own region
    assert httpx.get(url.replace(hk, server.base_url)).status_code == 404  # entry acts as de


def test_the_entry_acts_as_the_steered_region(server: Any, song: Path) -> None:
    first, done = _done(server.base_url, song)
    assert server.jobs[first].region == "de"
    assert done["data"]["files"][0]["url"].startswith(server.region_url("de") + "/storage/")
    answer = httpx.post(f"{server.base_url}/_emulator/steer", json={"region": "hk"})
    assert answer.json() == {
        "success": True,
        "region": "hk",
        "regions": server.state.regions.urls(),
    }
    second, done = _done(server.base_url, song)
    assert server.jobs[second].region == "hk"
    url = done["data"]["files"][0]["url"]
    assert url.startswith(server.region_url("hk") + "/storage/")
    # the entry now serves hk's files, and no longer de's (the first job stays in de)
    assert httpx.get(url.replace(server.region_url("hk"), server.base_url)).status_code == 200
    first_url = httpx.get(f"{server.base_url}/api/separation/get", params={"hash": first}).json()
    first_file = first_url["data"]["files"][0]["url"]
    assert first_file.startswith(server.region_url("de"))
    assert (
        httpx.get(first_file.replace(server.region_url("de"), server.base_url)).status_code == 404
    )
    server.steer("de")
    assert httpx.get(f"{server.base_url}/_emulator/steer").json()["region"] == "de"


def test_steer_refuses_an_unknown_region(server: Any) -> None:
    answer = httpx.post(f"{server.base_url}/_emulator/steer", json={"region": "mars"})
    assert answer.status_code == 400 and "mars" in answer.json()["message"]
    assert httpx.post(f"{server.base_url}/_emulator/steer", json={}).status_code == 400
    with pytest.raises(UnknownRegion):
        server.steer("mars")
    assert server.steered == "de"


def test_without_regions_nothing_changes(make_emulator: Factory, song: Path) -> None:
    server = make_emulator(rate_limit=False)
    job_hash, done = _done(server.base_url, song)
    assert server.jobs[job_hash].region is None and server.steered is None
    assert done["data"]["files"][0]["url"].startswith(server.base_url + "/storage/")
    steer = httpx.get(f"{server.base_url}/_emulator/steer").json()
    assert steer == {"success": True, "region": None, "regions": {}}


def test_cli_serves_regions(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    codes: list[int] = []
    argv = ["--region", "de", "--region", "hk", "--processing", "0", "--waiting", "0"]
    thread = threading.Thread(target=lambda: codes.append(main(argv, stop=stop)))
    thread.start()
    out = ""
    try:
        deadline = time.monotonic() + 20
        while "entry steered" not in out:
            assert time.monotonic() < deadline, f"the CLI never printed its regions: {out!r}"
            time.sleep(0.02)
            out += capsys.readouterr().out
        regions = dict(re.findall(r"region (\w+) on (http://127\.0\.0\.1:\d+)", out))
        assert set(regions) == {"de", "hk"}
        steer = httpx.get(f"{regions['hk']}/_emulator/steer").json()
        assert steer["regions"] == regions and steer["region"] == "de"
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0]
