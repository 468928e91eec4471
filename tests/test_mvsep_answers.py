"""Answer shapes of the real service that the emulator does not serve yet (issue 7).

These run against ``httpx.MockTransport``: the emulator's string ``success`` on create, its
``peaks`` arrays and its "File or File Hash not found" message are being added by another
helper at the same time, so the shapes here are copied from the public clients and the
OpenAPI spec summarised in ``../shared/mvsep-api.md`` ("Learned later").
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from daemon.errors import ApiError, ApiNotFound, ApiRejected
from daemon.mvsep import JobStatus, MvsepClient
from daemon.mvsep.failures import is_success

TOKEN = "tok-SECRET-answers"
BASE = "https://mvsep.test"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def client_answering(body: Any, status: int = 200) -> tuple[MvsepClient, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, json=body)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return MvsepClient(base_url=BASE, api_token=TOKEN, http=http, max_attempts=3), sent


# ---------------------------------------------------------------------------------------------
# success: bool, "true"/"false", 1/0, "1"/"0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True), (False, False), ("true", True), ("false", False), ("True", True),
        ("FALSE", False), (1, True), (0, False), ("1", True), ("0", False), (" true ", True),
        (None, None), ("maybe", None), ([], None),
    ],
)  # fmt: skip
def test_is_success_reads_every_shape(value: Any, expected: bool | None) -> None:
    assert is_success(value) is expected


@pytest.mark.parametrize("success", [True, "true", 1, "1"])
def test_create_accepts_every_true(success: Any) -> None:
    client, _ = client_answering({"success": success, "data": {"hash": "H1", "link": "x"}})
    assert client.create(sep_type=40, output_format=1, url="http://h/x").hash == "H1"


@pytest.mark.parametrize("success", [False, "false", 0, "0"])
@pytest.mark.parametrize("call", ["create", "get", "user"])
def test_every_false_is_a_refusal(success: Any, call: str) -> None:
    """Before issue 7 only the boolean ``False`` counted: ``"false"`` or ``0`` was read as
    success (a get then failed on a missing status, a create on a missing hash)."""
    body = {"success": success, "status": "waiting", "data": {"message": "Not allowed"}}
    client, sent = client_answering(body)
    run: dict[str, Callable[[], object]] = {
        "create": lambda: client.create(sep_type=40, output_format=1, url="http://h/x"),
        "get": lambda: client.get("H1"),
        "user": client.user,
    }
    with pytest.raises(ApiRejected, match="Not allowed"):
        run[call]()
    assert len(sent) == 1  # a refusal is never retried


def test_get_with_a_string_success_is_a_status() -> None:
    client, _ = client_answering({"success": "true", "status": "processing", "data": {}})
    assert client.get("H1").status == "processing"


# ---------------------------------------------------------------------------------------------
# "File or File Hash not found", in each of the three error shapes


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"success": False, "errors": ["File or File Hash not found"]}),
        (200, {"success": "false", "data": {"message": "File or File Hash not found"}}),
        (200, {"success": 0, "message": "File or File Hash not found"}),
        (400, {"success": False, "message": "File or File Hash not found"}),
        (404, {"message": "File or File Hash not found"}),
        (200, {"success": False, "data": {"message": "Separation not found"}}),
        (200, {"success": False, "status": "not_found", "data": {}}),
    ],
)
def test_unknown_hash_is_not_found_in_every_shape(status: int, body: Any) -> None:
    client, sent = client_answering(body, status)
    with pytest.raises(ApiNotFound) as caught:
        client.get("H-unknown")
    assert type(caught.value) is ApiNotFound and len(sent) == 1
    assert TOKEN not in str(caught.value)


def test_other_refusals_stay_rejections() -> None:
    client, _ = client_answering({"success": False, "errors": ["Algorithm is not active"]})
    with pytest.raises(ApiError) as caught:
        client.get("H1")
    assert type(caught.value) is ApiRejected


# ---------------------------------------------------------------------------------------------
# peaks: thousands of numbers per file, never kept


PEAKS_PER_FILE = 10_000


def done_body(files: int, rng: random.Random) -> dict[str, Any]:
    stems = [
        {
            "type": f"stem{i}",
            "url": f"https:\\/\\/mvsep.test\\/f\\/{i}.wav",
            "size": "5.70 MB",
            "download": f"song_stem{i}.wav",
            "peaks": [round(rng.uniform(-1, 1), 4) for _ in range(PEAKS_PER_FILE)],
        }
        for i in range(files)
    ]
    input_file = {"url": "https:\\/\\/mvsep.test\\/in.wav", "size": "1 MB", "peaks": [0.5] * 5000}
    return {"success": True, "status": "done", "data": {"files": stems, "input_file": input_file}}


def largest_list_reachable(root: object) -> int:
    """The longest list or tuple reachable from ``root`` through gc referents."""
    seen: set[int] = set()
    stack = [root]
    longest = 0
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        if isinstance(item, list | tuple):
            longest = max(longest, len(item))
        stack.extend(gc.get_referents(item))
    return longest


def test_done_with_large_peaks_parses_fast_and_keeps_no_peaks() -> None:
    client, _ = client_answering(done_body(10, random.Random(7)))
    began = time.perf_counter()
    status = client.get("H1")
    elapsed_s = time.perf_counter() - began
    assert isinstance(status, JobStatus) and status.is_finished and len(status.files) == 10
    assert status.files[3].url == "https://mvsep.test/f/3.wav"
    for model in (*status.files, status.input_file):
        assert model is not None and model.model_extra in (None, {})
        assert "peaks" not in model.model_dump() and not hasattr(model, "peaks")
    # 100,000 numbers came in; nothing longer than the ten files is held by the result.
    assert largest_list_reachable(status) <= 10
    assert elapsed_s < 5.0, f"parsing a 10-file done answer took {elapsed_s:.2f}s"


# ---------------------------------------------------------------------------------------------
# add_opt1..add_opt10 (no type of the emulator's catalogue has more than four fields yet)

TEN_OPTIONS = {f"add_opt{n}": str(n % 3) for n in range(1, 11)} | {"add_opt10": "free text"}


def test_create_sends_all_ten_options_form_encoded() -> None:
    client, sent = client_answering({"success": "true", "data": {"hash": "H1", "link": "x"}})
    client.create(sep_type=121, output_format=1, options=TEN_OPTIONS, url="http://h/x")
    form = dict(httpx.QueryParams(sent[0].content.decode()))
    assert {k: form[k] for k in TEN_OPTIONS} == TEN_OPTIONS
    assert form["sep_type"] == "121"


def test_create_sends_all_ten_options_in_the_upload(tmp_path: Path) -> None:
    audio = tmp_path / "song.wav"
    audio.write_bytes(b"RIFF" + bytes(2000))
    client, sent = client_answering({"success": "true", "data": {"hash": "H1", "link": "x"}})
    client.create(sep_type=121, output_format=1, options=TEN_OPTIONS, file=audio)
    body = sent[0].content
    for key, value in TEN_OPTIONS.items():
        assert f'name="{key}"\r\n\r\n{value}\r\n'.encode() in body
