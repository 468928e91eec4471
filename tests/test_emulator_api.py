"""The emulator's endpoints and answer shapes, over real loopback sockets."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.testing import ManualClock, create, finished, get, wait_for
from daemon.formats import BY_CODE

HASH_RE = re.compile(r"^\d{14}-[0-9a-f]{10}-[a-z0-9-]+\.[a-z0-9]+$")
SIZE_RE = re.compile(r"^\d+(\.\d\d)? (B|KB|MB)$")
DATE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@pytest.fixture
def server(make_emulator: Callable[..., Any]) -> Any:
    return make_emulator(rate_limit_per_min=10_000)


@pytest.fixture
def client(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


@pytest.fixture
def song(audio_file: Callable[..., Path]) -> Path:
    return audio_file("My Song (Live) #1.wav", seconds=2.0)


def test_start_is_fast_and_stop_frees_the_port() -> None:
    started = time.monotonic()
    server = EmulatorServer(EmulatorOptions(), host="127.0.0.1", port=0).start()
    assert time.monotonic() - started < 10.0  # well under 0.5 s on an idle machine
    port, data_dir = server.port, server.state.data_dir
    assert server.base_url == f"http://127.0.0.1:{port}"
    assert httpx.get(f"{server.base_url}/api/app/algorithms").status_code == 200
    server.stop()
    assert not data_dir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/api/app/algorithms", timeout=2)


def test_create_get_done_shapes(client: httpx.Client, song: Path) -> None:
    answer = create(client, song, sep_type=40, output_format=1)
    assert answer.status_code == 200
    body = answer.json()
    job_hash = body["data"]["hash"]
    assert body["success"] == "true"  # a string on create, as the real service answers
    assert HASH_RE.match(job_hash), job_hash
    assert job_hash.endswith("-my-song-live-1.wav")
    assert body["data"]["link"].endswith(f"/api/separation/get?hash={job_hash}")
    done = wait_for(client, job_hash, finished)
    assert done["success"] is True and done["status"] == "done"
    data = done["data"]
    assert data["output_format"] == BY_CODE[1].label
    assert DATE_RE.match(data["date"])
    assert SIZE_RE.match(data["size"])
    assert data["algorithm"].startswith("BS Roformer")
    assert set(data["input_file"]) == {"url", "size", "download"}
    assert [f["type"] for f in data["files"]] == ["Vocals", "Instrumental"]
    for entry in data["files"]:
        assert set(entry) == {"type", "url", "size", "image", "download", "peaks"}
        assert SIZE_RE.match(entry["size"])
        assert entry["download"].endswith(".wav")
    assert client.get(data["input_file"]["url"]).content == song.read_bytes()


def test_hashes_are_unique_within_one_second(make_emulator: Callable[..., Any], song: Path) -> None:
    server = make_emulator(premium=True, rate_limit_per_min=1000)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        hashes = [create(c, song, sep_type=40).json()["data"]["hash"] for _ in range(3)]
    assert len(set(hashes)) == 3
    assert all(HASH_RE.match(h) for h in hashes)
    assert len({h.split("-")[1] for h in hashes}) == 1  # one account, one hex id


def test_unknown_and_expired_hash_is_not_found(client: httpx.Client) -> None:
    body = get(client, "20240101000000-0123456789-nope.wav")
    assert body["success"] is False and body["status"] == "not_found"
    assert body["data"]["message"]


def test_token_errors(make_emulator: Callable[..., Any], song: Path) -> None:
    server = make_emulator(tokens=("good",))
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        bad = create(c, song, token="bad", sep_type=40)
        assert bad.status_code == 401 and bad.json()["success"] is False
        missing = c.post("/api/separation/create", data={"sep_type": "40"})
        assert missing.status_code == 401
        assert c.get("/api/app/user", params={"api_token": "bad"}).status_code == 400
        history = c.get("/api/app/separation_history", params={"api_token": "bad"})
        assert history.status_code == 400
        assert create(c, song, token="good", sep_type=40).status_code == 200


@pytest.mark.parametrize(
    ("fields", "shape"),
    [
        ({"sep_type": 11}, "data"),  # the page's default no longer exists
        ({"sep_type": 35}, "data"),  # inactive
        ({"sep_type": "x"}, "data"),
        ({"sep_type": 40, "output_format": 9}, "data"),
        ({"sep_type": 40, "add_opt1": "999"}, "data"),  # not one of the select's keys
        ({"sep_type": 40, "add_opt4": "1"}, "data"),  # a field the type does not have
        ({"sep_type": 40, "bogus": "1"}, "data"),  # unknown parameter
        ({"sep_type": 26}, "errors"),  # orientation 2: premium only
        ({"sep_type": 40, "output_format": 5}, "errors"),  # premium-only format
        ({"sep_type": 40, "output_format": 4}, "errors"),
    ],
)
def test_create_rejections(
    client: httpx.Client, song: Path, fields: dict[str, Any], shape: str
) -> None:
    answer = create(client, song, **fields)
    assert answer.status_code == 400
    body = answer.json()
    assert body["success"] is False
    if shape == "errors":
        assert isinstance(body["errors"], list) and body["errors"][0]
    else:
        assert body["data"]["message"]


def test_valid_options_and_text_fields(client: httpx.Client, song: Path, server: Any) -> None:
    ok = create(client, song, sep_type=40, add_opt1="29", add_opt2="8", add_opt3="1")
    assert ok.status_code == 200, ok.text
    job = server.jobs[ok.json()["data"]["hash"]]
    assert job.options == {"add_opt1": "29", "add_opt2": "8", "add_opt3": "1"}
    assert job.sep_type == 40 and job.upload_name == song.name and job.token == "test-token"
    wait_for(client, ok.json()["data"]["hash"], finished)
    text = create(client, song, sep_type=39, add_opt3="any language at all")
    assert text.status_code == 200, text.text


def test_premium_account_gets_premium_types_and_formats(
    make_emulator: Callable[..., Any], song: Path
) -> None:
    server = make_emulator(premium=True)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        answer = create(c, song, sep_type=26, output_format=5)
        assert answer.status_code == 200, answer.text
        assert wait_for(c, answer.json()["data"]["hash"], finished)["data"]["output_format"] == (
            "flac (24 bit)"
        )


def test_plan_caps(make_emulator: Callable[..., Any], audio_file: Callable[..., Path]) -> None:
    long_song = audio_file("long.wav", seconds=3.0, sample_rate=8000, channels=1)
    server = make_emulator(free_max_seconds=2.0, free_max_bytes=10**9)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        too_long = create(c, long_song, sep_type=40)
        assert too_long.status_code == 400 and "too long" in too_long.json()["data"]["message"]
    small = make_emulator(free_max_bytes=1000)
    with httpx.Client(base_url=small.base_url, timeout=60) as c:
        too_big = create(c, long_song, sep_type=40)
        assert too_big.status_code == 400 and "too large" in too_big.json()["data"]["message"]
    assert small.stats["creates_rejected"] == 1


def test_algorithms_is_a_bare_array_with_encoded_fields(client: httpx.Client) -> None:
    answer = client.get("/api/app/algorithms")
    catalogue = answer.json()
    assert isinstance(catalogue, list) and len(catalogue) > 40
    by_id = {t["render_id"]: t for t in catalogue}
    assert {by_id[r]["orientation"] for r in (26, 28, 30)} == {2}
    assert by_id[35]["is_active"] == 0
    assert all(t["id"] != t["render_id"] for t in catalogue)
    demucs = by_id[20]
    assert json.loads(demucs["output_stems"]) == ["vocals", "drums", "bass", "other"]
    assert isinstance(json.loads(demucs["outputs"]), dict)
    field = demucs["algorithm_fields"][0]
    assert field["name"] == "add_opt1" and field["input_type"] == "select"
    assert field["default_key"] in json.loads(field["options"])
    keys = [int(k) for k in json.loads(by_id[40]["algorithm_fields"][0]["options"])]
    assert keys != list(range(keys[0], keys[0] + len(keys)))  # non-contiguous keys
    assert answer.headers["X-RateLimit-Limit"] == "10000"


def test_serves_the_real_capture(
    make_emulator: Callable[..., Any], captures: Path, song: Path
) -> None:
    server = make_emulator(catalogue_path=captures / "algorithms.json", premium=True)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        served = c.get("/api/app/algorithms").json()
        assert served == json.loads((captures / "algorithms.json").read_text("utf-8"))
        answer = create(c, song, sep_type=49, add_opt1="6", output_format=2)
        assert answer.status_code == 200, answer.text
        done = wait_for(c, answer.json()["data"]["hash"], finished)
        labels = [f["type"] for f in done["data"]["files"]]
        assert labels[:2] == ["Lead vocals", "Back vocals"] and len(labels) == 4
        assert create(c, song, sep_type=11).status_code == 400


def test_user_login_queue(client: httpx.Client, server: Any) -> None:
    user = client.get("/api/app/user", params={"api_token": "tok"}).json()
    assert user["success"] is True
    expected = {"name", "email", "api_token", "premium_minutes", "premium_enabled"}
    assert expected | {"long_filenames_enabled", "current_queue"} <= set(user["data"])
    assert user["data"]["premium_enabled"] == 0 and user["data"]["current_queue"] == 0
    missing = client.post("/api/app/login", data={"email": "a@b.c"})
    assert missing.status_code == 400
    assert missing.json() == {
        "success": False,
        "message": {"password": ["The password field is required."]},
    }
    both = client.post("/api/app/login", data={}).json()["message"]
    assert both["email"] == ["The email field is required."]
    login = client.post("/api/app/login", data={"email": "a@b.c", "password": "x"}).json()
    assert login["success"] is True and login["data"]["email"] == "a@b.c"
    assert login["data"]["api_token"]
    queue = client.get("/api/app/queue").json()
    assert queue["success"] is True and set(queue["data"]["queue"]) == {"free", "premium"}


def test_history_newest_first_and_limits(client: httpx.Client, song: Path) -> None:
    hashes = []
    for _ in range(3):
        answer = create(client, song, sep_type=40)
        hashes.append(answer.json()["data"]["hash"])
        wait_for(client, hashes[-1], finished)
    params = {"api_token": "test-token", "start": "0", "limit": "2"}
    data = client.get("/api/app/separation_history", params=params).json()["data"]
    assert [e["hash"] for e in data] == hashes[::-1][:2]
    entry = data[0]
    assert {"id", "hash", "created_at", "updated_at", "job_exists", "credits", "time_left"} <= set(
        entry
    )
    assert entry["job_exists"] is True and entry["time_left"] > 0
    assert entry["algorithm"]["render_id"] == 40 and entry["algorithm"]["name"]
    rest = client.get("/api/app/separation_history", params={**params, "start": "2"}).json()
    assert [e["hash"] for e in rest["data"]] == hashes[:1]
    too_many = client.get("/api/app/separation_history", params={**params, "limit": "21"})
    assert too_many.status_code == 400


def test_rate_limit_headers_and_429() -> None:
    clock = ManualClock()
    options = EmulatorOptions(rate_limit_per_min=3, rate_limit_window_s=10.0)
    with EmulatorServer(options, host="127.0.0.1", port=0, clock=clock) as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            remaining = [
                c.get("/api/app/user", params={"api_token": "a"}).headers["X-RateLimit-Remaining"]
                for _ in range(3)
            ]
            assert remaining == ["2", "1", "0"]
            clock.advance(4.2)
            limited = c.get("/api/app/user", params={"api_token": "a"})
            assert limited.status_code == 429
            assert limited.json() == {"success": False, "message": "Too Many Attempts."}
            assert limited.headers["X-RateLimit-Limit"] == "3"
            assert limited.headers["Retry-After"] == "6"
            assert c.get("/api/app/user", params={"api_token": "b"}).status_code == 200
            clock.advance(6)
            assert c.get("/api/app/user", params={"api_token": "a"}).status_code == 200
        assert server.stats["rate_limited"] == 1


def test_rate_limit_off_never_429(make_emulator: Callable[..., Any]) -> None:
    server = make_emulator(rate_limit_per_min=2, rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        codes = {c.get("/api/app/algorithms").status_code for _ in range(5)}
    assert codes == {200}


def test_downloads_support_range_and_are_not_rate_limited(
    make_emulator: Callable[..., Any], song: Path
) -> None:
    server = make_emulator(rate_limit_per_min=4, rate_limit_window_s=30)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40, output_format=1).json()["data"]["hash"]
        deadline = time.monotonic() + 60
        while server.jobs[job_hash].state != "done":  # not through the API: it is rate limited
            assert time.monotonic() < deadline
            time.sleep(0.05)
        done = get(c, job_hash)
        url = done["data"]["files"][0]["url"]
        whole = c.get(url)
        for _ in range(5):
            assert c.get(url).status_code == 200
        part = c.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == whole.content[10:20]
        assert "X-RateLimit-Limit" not in whole.headers


def test_ipv6_host_urls(song: Path) -> None:
    try:
        server = EmulatorServer(EmulatorOptions(), host="::1", port=0).start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.base_url.startswith("http://[::1]:")
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
            done = wait_for(c, job_hash, finished)
            assert done["data"]["files"][0]["url"].startswith(server.base_url + "/storage/")
            assert c.get(done["data"]["files"][0]["url"]).status_code == 200
    finally:
        server.stop()
