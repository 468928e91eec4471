"""Issue 7: the emulator answers as the real MVSEP does where a real client can tell.

Empty options, text-field options, the string ``success`` of create, ``peaks``, add_opt1..10,
the real not-found text and per-route rate limits; all over real loopback sockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.emulator.cli import build_parser, options_from_args
from daemon.emulator.testing import ManualClock, create, finished, get, wait_for

Factory = Callable[..., Any]


@pytest.fixture
def server(make_emulator: Factory) -> Any:
    return make_emulator(rate_limit=False, parallel_limit=10)


@pytest.fixture
def client(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


@pytest.fixture
def song(audio_file: Callable[..., Path]) -> Path:
    return audio_file("song.wav", seconds=1.0, sample_rate=8000, channels=1)


# -- empty options are the type's defaults ---------------------------------------------------


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_options_are_the_defaults(
    client: httpx.Client, server: Any, song: Path, empty: str
) -> None:
    answer = create(client, song, sep_type=40, add_opt1=empty, add_opt2=empty, add_opt3=empty)
    assert answer.status_code == 200, answer.text
    job = server.jobs[answer.json()["data"]["hash"]]
    assert job.options == {"add_opt1": "81", "add_opt2": "2", "add_opt3": "0"}  # default_key
    assert wait_for(client, job.hash, finished)["status"] == "done"


def test_empty_options_for_fields_the_type_lacks_are_ignored(
    client: httpx.Client, server: Any, song: Path
) -> None:
    # sep_type 63 has no fields, 48 only add_opt1: public clients still send add_opt1..3
    for sep_type, expected in ((63, {}), (48, {"add_opt1": "4"})):
        answer = create(client, song, sep_type=sep_type, add_opt1="", add_opt2="", add_opt3="")
        assert answer.status_code == 200, answer.text
        assert server.jobs[answer.json()["data"]["hash"]].options == expected
    # a value (not empty) for a field the type lacks is still refused
    assert create(client, song, sep_type=63, add_opt1="1").status_code == 400


def test_empty_text_field_is_empty_and_null_default_key_is_the_first_option(
    make_emulator: Factory, captures: Path, song: Path
) -> None:
    server = make_emulator(catalogue_path=captures / "algorithms.json", rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        text = create(c, song, sep_type=103, add_opt1="", add_opt2="", add_opt3="")
        assert text.status_code == 200, text.text
        options = server.jobs[text.json()["data"]["hash"]].options
        assert options == {"add_opt1": "1", "add_opt2": "", "add_opt3": "1"}
        wait_for(c, text.json()["data"]["hash"], finished)
        # sep_type 17: a select with "default_key": null -> its first option (a guess)
        first = create(c, song, sep_type=17, add_opt1="")
        assert first.status_code == 200, first.text
        assert server.jobs[first.json()["data"]["hash"]].options == {"add_opt1": "0"}


# -- catalogue --------------------------------------------------------------------------------


def test_every_field_options_is_a_json_object(client: httpx.Client) -> None:
    catalogue = client.get("/api/app/algorithms").json()
    kinds = set()
    for entry in catalogue:
        for field in entry["algorithm_fields"]:
            assert isinstance(json.loads(field["options"]), dict), (entry["render_id"], field)
            kinds.add(field["input_type"])
            if field["input_type"] in ("text", "textarea"):
                assert field["options"] == "{}"  # as the real capture (render_id 103, 120)
    assert {"select", "text", "textarea"} <= kinds


def test_a_type_with_ten_fields(client: httpx.Client, server: Any, song: Path) -> None:
    by_id = {t["render_id"]: t for t in client.get("/api/app/algorithms").json()}
    fields = by_id[121]["algorithm_fields"]
    assert [f["name"] for f in fields] == [f"add_opt{i}" for i in range(1, 11)]
    values = {f["name"]: next(iter(json.loads(f["options"])), "free text") for f in fields}
    answer = create(client, song, sep_type=121, **values)
    assert answer.status_code == 200, answer.text
    assert server.jobs[answer.json()["data"]["hash"]].options == values
    bad = create(client, song, sep_type=121, add_opt10="x", add_opt9="no such key")
    assert bad.status_code == 400 and "add_opt9" in bad.json()["data"]["message"]
    assert create(client, song, sep_type=121, add_opt11="1").status_code == 400  # unknown


# -- answer shapes ----------------------------------------------------------------------------


def test_create_success_is_a_string_get_and_get_remote_are_booleans(
    client: httpx.Client, song: Path, server: Any
) -> None:
    made = create(client, song, sep_type=40).json()
    assert made["success"] == "true"
    job_hash = made["data"]["hash"]
    assert wait_for(client, job_hash, finished)["success"] is True
    input_url = get(client, job_hash)["data"]["input_file"]["url"]
    remote = create(client, None, sep_type=40, url=input_url).json()
    assert remote["success"] == "true"
    body = client.get("/api/separation/get-remote", params={"hash": remote["data"]["hash"]}).json()
    assert body["success"] is True
    refused = create(client, song, sep_type=9999).json()
    assert refused["success"] is False  # errors stay a boolean false


def test_done_files_carry_peaks(client: httpx.Client, song: Path) -> None:
    job_hash = create(client, song, sep_type=20).json()["data"]["hash"]
    files = wait_for(client, job_hash, finished)["data"]["files"]
    assert len(files) == 4
    for entry in files:
        assert {"type", "url", "size", "download"} <= set(entry)
        peaks = entry["peaks"]
        assert len(peaks) == 4000 and all(isinstance(p, float) and 0 <= p <= 1 for p in peaks)
    assert files[0]["peaks"] != files[1]["peaks"]
    assert get(client, job_hash)["data"]["files"] == files  # the same numbers every time


@pytest.mark.parametrize(("peaks_len", "expected"), [(0, None), (7, 7)])
def test_peaks_len(
    make_emulator: Factory, song: Path, peaks_len: int, expected: int | None
) -> None:
    server = make_emulator(rate_limit=False, peaks_len=peaks_len)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40).json()["data"]["hash"]
        entry = wait_for(c, job_hash, finished)["data"]["files"][0]
    assert (len(entry["peaks"]) if "peaks" in entry else None) == expected


def test_unknown_hash_has_the_real_message(client: httpx.Client) -> None:
    body = get(client, "20240101000000-0123456789-nope.wav")
    assert body == {
        "success": False,
        "status": "not_found",
        "data": {"message": "File or File Hash not found"},
    }


# -- per-route rate limits --------------------------------------------------------------------


def _limit(c: httpx.Client, path: str, **params: str) -> tuple[int, str, str]:
    answer = c.get(path, params=params)
    return (
        answer.status_code,
        answer.headers["X-RateLimit-Limit"],
        answer.headers["X-RateLimit-Remaining"],
    )


def test_default_limits_differ_by_route(make_emulator: Factory) -> None:
    server = make_emulator()
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        assert _limit(c, "/api/separation/get", hash="x")[1:] == ("60", "59")
        assert _limit(c, "/api/app/algorithms")[1:] == ("60", "59")
        assert _limit(c, "/api/app/user", api_token="t")[1:] == ("120", "119")
        assert _limit(c, "/api/app/separation_history", api_token="t")[1:] == ("120", "119")
        login = c.post("/api/app/login", data={"email": "a@b.c", "password": "x"})
        assert login.headers["X-RateLimit-Limit"] == "120"
        # each route has its own window: the user route's count did not move get's
        assert _limit(c, "/api/separation/get", hash="x")[1:] == ("60", "58")


def test_each_route_counts_in_its_own_window() -> None:
    clock = ManualClock()
    options = EmulatorOptions(rate_limits={"get": 2, "user": 3}, rate_limit_window_s=10.0)
    with EmulatorServer(options, host="127.0.0.1", port=0, clock=clock) as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            gets = [_limit(c, "/api/separation/get", hash="x")[0] for _ in range(3)]
            assert gets == [200, 200, 429]
            users = [_limit(c, "/api/app/user", api_token="t")[0] for _ in range(4)]
            assert users == [200, 200, 200, 429]
            assert _limit(c, "/api/app/algorithms")[1] == "60"  # untouched by the others
            clock.advance(10)
            assert _limit(c, "/api/separation/get", hash="x")[0] == 200


def test_a_global_limit_still_applies_to_every_route_unless_named(make_emulator: Factory) -> None:
    server = make_emulator(rate_limit_per_min=7, rate_limits={"history": 9})
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        assert _limit(c, "/api/app/user", api_token="t")[1] == "7"
        assert _limit(c, "/api/separation/get", hash="x")[1] == "7"
        assert _limit(c, "/api/app/separation_history", api_token="t")[1] == "9"


def test_cli_rate_limit_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["--rate-limit", "history=5", "--rate-limit", "get=3"])
    options = options_from_args(args)
    assert options.rate_limits == {"history": 5, "get": 3}
    assert [options.rate_limit_for(r) for r in ("history", "get", "user", "create")] == [
        5,
        3,
        120,
        60,
    ]
    assert (
        options_from_args(parser.parse_args(["--rate-limit-per-min", "9"])).rate_limit_for("user")
        == 9
    )
    for bad in ("nosuchroute=3", "get", "get=x", "get=0"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--rate-limit", bad])


def test_bad_options_are_refused() -> None:
    for bad in (
        {"rate_limits": {"nope": 3}},
        {"over_limit": "maybe"},
        {"peaks_len": -1},
        {"regions": ("de", "de")},
        {"regions": ("De",)},
    ):
        with pytest.raises(ValueError):
            EmulatorOptions(**bad)
