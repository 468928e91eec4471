"""MvsepClient against httpx.MockTransport: error mapping, retries, create rules, gate, secrets."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
import structlog

from daemon.errors import (
    ApiAuthError,
    ApiConnectionError,
    ApiError,
    ApiNotFound,
    ApiRateLimited,
    ApiRejected,
    ApiServerError,
    ApiSlotsFull,
    ApiTimeout,
    OutcomeUnknown,
    RetryLater,
)
from daemon.mvsep import MvsepClient

TOKEN = "tok-SECRET-1234567890"
BASE = "https://mvsep.test"
Step = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """stamina test mode: no waits, the client's own max_attempts still applies."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class Script:
    """A MockTransport handler playing ``steps`` in order (the last one repeats)."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return step(request)

    def client(self, **kwargs: Any) -> MvsepClient:
        http = httpx.Client(transport=httpx.MockTransport(self))
        options: dict[str, Any] = {"base_url": BASE, "api_token": TOKEN, "http": http}
        return MvsepClient(**{**options, **kwargs})


def reply(status: int = 200, json: Any = None, text: str | None = None, **headers: str) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=json, headers=headers)

    return step


def fail(exc_type: type[httpx.TransportError], message: str = "boom") -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return step


CREATED = reply(json={"success": True, "data": {"hash": "H1", "link": "https:\\/\\/x\\/get"}})
WAITING = reply(json={"success": True, "status": "waiting", "data": {"queue_count": 1}})
SLOTS = reply(400, json={"success": False, "errors": ["Limit of parallel jobs reached"]})


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    path.write_bytes(bytes(range(256)) * 1000)
    return path


# ---------------------------------------------------------------------------------------------
# requests as sent


def test_get_sends_hash_and_token_and_flattens_status() -> None:
    script = Script(WAITING)
    status = script.client().get("H1")
    assert status.status == "waiting" and status.queue_count == 1
    request = script.requests[0]
    assert request.method == "GET" and request.url.path == "/api/separation/get"
    assert request.url.params["hash"] == "H1" and request.url.params["api_token"] == TOKEN


def test_failed_job_is_data_not_an_exception() -> None:
    body = {"success": True, "status": "failed", "data": {"message": "Bad audio"}}
    status = Script(reply(json=body)).client().get("H1")
    assert status.is_failed and status.message == "Bad audio"


def test_create_with_file_streams_multipart(audio: Path) -> None:
    script = Script(CREATED)
    seen: list[tuple[int, int]] = []
    result = script.client().create(
        sep_type=40,
        output_format=2,
        options={"add_opt1": "5"},
        file=audio,
        upload_name="n0nce-song.wav",
        progress=lambda sent, total: seen.append((sent, total)),
    )
    assert (result.hash, result.link) == ("H1", "https://x/get")
    request = script.requests[0]
    body = request.content
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert int(request.headers["content-length"]) == len(body)  # sized, not chunked
    for name, value in [
        ("api_token", TOKEN),
        ("sep_type", "40"),
        ("output_format", "2"),
        ("add_opt1", "5"),
    ]:
        assert f'name="{name}"\r\n\r\n{value}\r\n'.encode() in body
    assert b'name="audiofile"; filename="n0nce-song.wav"' in body
    assert audio.read_bytes() in body
    size = audio.stat().st_size
    assert seen[-1] == (size, size) and len(seen) > 1
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)


def test_create_with_url_is_form_encoded() -> None:
    script = Script(CREATED)
    script.client().create(
        sep_type=40,
        output_format=0,
        url="http://127.0.0.1/a.wav",
        remote_type="direct",
        is_demo=True,
    )
    request = script.requests[0]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form == {
        "api_token": TOKEN,
        "sep_type": "40",
        "output_format": "0",
        "is_demo": "1",
        "url": "http://127.0.0.1/a.wav",
        "remote_type": "direct",
    }


def test_create_needs_exactly_one_source(audio: Path) -> None:
    client = Script(CREATED).client()
    with pytest.raises(ValueError):
        client.create(sep_type=1, output_format=0)
    with pytest.raises(ValueError):
        client.create(sep_type=1, output_format=0, file=audio, url="http://x")


def test_other_calls() -> None:
    script = Script(
        reply(json={"success": True, "data": {"message": "Cancelled"}}),
        reply(
            json={
                "success": True,
                "data": {
                    "name": "n",
                    "email": "e",
                    "api_token": TOKEN,
                    "premium_minutes": "54",
                    "premium_enabled": 1,
                    "long_filenames_enabled": 0,
                    "current_queue": 1,
                },
            }
        ),
        reply(json={"success": True, "data": {"queue": {"free": 3}, "plan": 3}}),
        reply(json={"success": True, "status": "done", "data": {"hash": "REAL", "link": "l"}}),
        reply(json={"success": True, "data": []}),
    )
    client = script.client()
    assert client.cancel("H1") == "Cancelled"
    user = client.user()
    assert user.premium_minutes == 54 and user.premium_enabled and user.current_queue == 1
    assert client.queue().queue == {"free": 3}
    assert client.get_remote("R1").hash == "REAL"
    assert client.separation_history(start=5, limit=99) == []
    cancel, user_rq, queue, remote, history = script.requests
    assert cancel.method == "POST" and dict(httpx.QueryParams(cancel.content.decode())) == {
        "api_token": TOKEN,
        "hash": "H1",
    }
    assert user_rq.url.path == "/api/app/user" and queue.url.path == "/api/app/queue"
    assert remote.url.path == "/api/separation/get-remote"
    assert history.url.params["limit"] == "20" and history.url.params["start"] == "5"


# ---------------------------------------------------------------------------------------------
# error mapping (each shape, each status) and retry vs no retry


@pytest.mark.parametrize(
    ("step", "error", "retried"),
    [
        (reply(200, {"success": False, "errors": ["Premium only"]}), ApiRejected, False),
        (reply(400, {"success": False, "data": {"message": "Bad sep_type"}}), ApiRejected, False),
        (reply(200, {"success": False, "message": "nope"}), ApiRejected, False),
        (reply(400, {"success": False, "message": {"hash": ["required"]}}), ApiRejected, False),
        (reply(400, {"success": False, "message": "Invalid api_token"}), ApiAuthError, False),
        (reply(401, {"success": False, "message": "Unauthenticated."}), ApiAuthError, False),
        (reply(200, {"success": False, "status": "not_found", "data": {}}), ApiNotFound, False),
        (reply(404, text="<html>no</html>"), ApiRejected, False),
        (reply(400, {"success": False}), ApiRejected, False),
        (SLOTS, ApiSlotsFull, True),
        (reply(200, text="<html>maintenance</html>"), ApiServerError, True),
        (reply(502, text="<html>bad gateway</html>"), ApiServerError, True),
        (reply(500, {"success": False, "message": "oops"}), ApiServerError, True),
        (
            reply(429, {"message": "Too Many Attempts."}, **{"Retry-After": "0"}),
            ApiRateLimited,
            True,
        ),
        (fail(httpx.ConnectError), ApiConnectionError, True),
        (fail(httpx.ReadError), ApiConnectionError, True),
        (fail(httpx.RemoteProtocolError), ApiConnectionError, True),
        (fail(httpx.ConnectTimeout), ApiTimeout, True),
        (fail(httpx.ReadTimeout), ApiTimeout, True),
        (
            reply(200, {"success": True, "status": "done", "data": {"files": "x"}}),
            ApiServerError,
            True,
        ),
    ],
)
def test_error_mapping_and_retries(step: Step, error: type[ApiError], retried: bool) -> None:
    script = Script(step)
    with pytest.raises(error) as caught:
        script.client(max_attempts=3).get("H1")
    assert type(caught.value) is error
    assert caught.value.endpoint == "get"
    assert len(script.requests) == (3 if retried else 1)
    assert isinstance(caught.value, RetryLater) is retried


def test_error_text_reaches_the_message() -> None:
    body = {"success": False, "errors": ["Only for premium users"], "message": "x"}
    with pytest.raises(ApiRejected, match="Only for premium users") as caught:
        Script(reply(200, body)).client().algorithms()
    assert caught.value.status_code == 200


def test_transient_errors_then_success() -> None:
    script = Script(reply(503, text="busy"), fail(httpx.ReadTimeout), WAITING)
    assert script.client(max_attempts=5).get("H1").status == "waiting"
    assert len(script.requests) == 3


# ---------------------------------------------------------------------------------------------
# create: never pay twice


@pytest.mark.parametrize(
    "step",
    [
        fail(httpx.ReadTimeout),
        fail(httpx.WriteTimeout),
        fail(httpx.ReadError),
        fail(httpx.WriteError),
        fail(httpx.RemoteProtocolError),
        reply(500, text="oops"),
        reply(503, {"success": False}),
        reply(200, text="<html>?</html>"),
        reply(200, {"success": True, "data": {"link": "no hash"}}),
        reply(200, {"success": True}),
    ],
    ids=[
        "read-timeout",
        "write-timeout",
        "read-error",
        "write-error",
        "protocol",
        "500",
        "503",
        "html-200",
        "no-hash",
        "no-data",
    ],
)
def test_create_ambiguous_failures_are_outcome_unknown(step: Step, audio: Path) -> None:
    script = Script(step, CREATED)
    with pytest.raises(OutcomeUnknown):
        script.client(max_attempts=5).create(sep_type=40, output_format=0, file=audio)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "step",
    [
        fail(httpx.ConnectError),
        fail(httpx.ConnectTimeout),
        fail(httpx.PoolTimeout),
        SLOTS,
        reply(429, {"message": "Too Many Attempts."}),
    ],
    ids=["connect-error", "connect-timeout", "pool-timeout", "slots-full", "429"],
)
def test_create_retries_only_when_nothing_was_created(step: Step, audio: Path) -> None:
    script = Script(step, CREATED)
    progress: list[int] = []
    result = script.client(max_attempts=5).create(
        sep_type=40, output_format=0, file=audio, progress=lambda s, t: progress.append(s)
    )
    assert result.hash == "H1" and len(script.requests) == 2
    assert progress[-1] == audio.stat().st_size


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (reply(400, {"success": False, "errors": ["bad sep_type"]}), ApiRejected),
        (reply(401, {"message": "Unauthenticated."}), ApiAuthError),
        (reply(200, {"success": False, "data": {"message": "File too big"}}), ApiRejected),
    ],
)
def test_create_refusals_are_not_retried(step: Step, error: type[ApiError]) -> None:
    script = Script(step, CREATED)
    with pytest.raises(error):
        script.client().create(sep_type=40, output_format=0, url="http://127.0.0.1/x.wav")
    assert len(script.requests) == 1


def test_create_gives_up_after_max_attempts_when_slots_stay_full() -> None:
    script = Script(SLOTS)
    with pytest.raises(ApiSlotsFull):
        script.client(max_attempts=4).create(sep_type=40, output_format=0, url="http://h/x")
    assert len(script.requests) == 4


# ---------------------------------------------------------------------------------------------
# secrets


def leaky(exc_type: type[httpx.TransportError]) -> Step:
    """An httpx error whose text carries the full URL, token included."""

    def step(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed talking to {request.url}", request=request)

    return step


@pytest.mark.parametrize(
    "step",
    [
        leaky(httpx.ConnectError),
        leaky(httpx.ReadTimeout),
        leaky(httpx.RemoteProtocolError),
        reply(400, {"success": False, "message": f"unknown key {TOKEN}"}),
        reply(500, text=f"trace with {TOKEN}"),
        reply(200, {"success": True, "data": {"api_token": TOKEN, "premium_minutes": [TOKEN]}}),
    ],
)
@pytest.mark.parametrize("call", ["user", "create"])
def test_token_never_in_errors(step: Step, call: str, audio: Path) -> None:
    client = Script(step).client(max_attempts=2)
    with structlog.testing.capture_logs() as logs, pytest.raises(ApiError) as caught:
        if call == "user":
            client.user()
        else:
            client.create(sep_type=1, output_format=0, file=audio)
    exc = caught.value
    texts = [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        repr(client),
        repr(logs),
    ]
    assert all(TOKEN not in text for text in texts)
    assert exc.endpoint == call


def test_safe_causes_are_still_chained() -> None:
    with pytest.raises(ApiConnectionError) as caught:
        Script(fail(httpx.ConnectError, "refused")).client(max_attempts=1).get("H")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "GET /api/separation/get" in str(caught.value)


def test_debug_log_per_request() -> None:
    script = Script(reply(503, text="x"), WAITING)
    with structlog.testing.capture_logs() as logs:
        script.client().get("H1")
    lines = [e for e in logs if e["event"] == "mvsep.request"]
    assert [e["status"] for e in lines] == [503, 200]
    assert all(e["path"] == "/api/separation/get" and e["method"] == "GET" for e in lines)
    assert all("elapsed_s" in e for e in lines)


# ---------------------------------------------------------------------------------------------
# lifecycle


def test_context_manager_closes_only_its_own_http() -> None:
    injected = httpx.Client(transport=httpx.MockTransport(WAITING))
    with MvsepClient(base_url=BASE + "/", api_token=TOKEN, http=injected) as client:
        assert client.base_url == BASE
    assert not injected.is_closed
    with MvsepClient(base_url=BASE, api_token=TOKEN) as owned:
        pass
    assert owned._http.is_closed
