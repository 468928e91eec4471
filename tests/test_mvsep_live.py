"""MvsepClient against the real emulator over loopback: every call and every fault kind."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import stamina

from daemon.errors import (
    ApiAuthError,
    ApiNotFound,
    ApiRejected,
    ApiServerError,
    ApiSlotsFull,
    OutcomeUnknown,
)
from daemon.mvsep import JobStatus, MvsepClient
from daemon.mvsep.streams import part_path

pytest.importorskip("daemon.emulator.server", reason="the emulator is not available")
from daemon.emulator import Fault  # noqa: E402

TOKEN = "live-token-0123456789"
SEP_TYPE = 40  # BS Roformer: free, active, three select fields
DEADLINE_S = 60.0  # generous: the DSP split is slow on a loaded machine
Emu = Any
_T = TypeVar("_T")


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """No stamina waits (Retry-After is then ignored too); the client's attempts still count."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def emu(make_emulator: Callable[..., Emu]) -> Emu:
    """A premium emulator without the rate limit (tests poll fast)."""
    return make_emulator(premium=True, rate_limit=False)


def client_for(emu: Emu, **kwargs: Any) -> MvsepClient:
    options: dict[str, Any] = {
        "base_url": emu.base_url,
        "api_token": TOKEN,
        "max_attempts": 4,
        "retry_timeout_s": 20,
    }
    return MvsepClient(**{**options, **kwargs})


def calls(emu: Emu, endpoint: str) -> int:
    counts: dict[str, int] = emu.stats["calls"]
    return counts.get(endpoint, 0)


def wait_until(probe: Callable[[], _T | None], what: str, deadline_s: float = DEADLINE_S) -> _T:
    """Poll ``probe`` until it returns something other than None, or fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_settled(client: MvsepClient, job_hash: str) -> JobStatus:
    """Poll ``get`` until the job is finished (files ready) or failed."""

    def probe() -> JobStatus | None:
        status = client.get(job_hash)
        return status if status.is_finished or status.is_failed else None

    return wait_until(probe, f"job {job_hash}")


def submit(client: MvsepClient, audio: Path, **kwargs: Any) -> str:
    return client.create(sep_type=SEP_TYPE, output_format=1, file=audio, **kwargs).hash


# ---------------------------------------------------------------------------------------------
# every call


def test_full_job_with_file(emu: Emu, audio_file: Callable[..., Path], tmp_path: Path) -> None:
    audio = audio_file("song.wav", seconds=2.0)
    progress: list[tuple[int, int]] = []
    with client_for(emu) as client:
        user = client.user()
        assert user.premium_enabled and user.premium_minutes > 0
        catalogue = {a.render_id: a for a in client.algorithms()}
        assert SEP_TYPE in catalogue and catalogue[SEP_TYPE].fields
        assert client.queue().queue is not None
        created = client.create(
            sep_type=SEP_TYPE,
            output_format=1,
            options={"add_opt1": "81"},
            file=audio,
            upload_name="n0nce1-song.wav",
            progress=lambda s, t: progress.append((s, t)),
        )
        assert created.hash and created.link.startswith(emu.base_url)
        assert progress[-1] == (audio.stat().st_size,) * 2
        assert emu.jobs[created.hash].upload_name == "n0nce1-song.wav"
        status = wait_settled(client, created.hash)
        assert status.is_finished and len(status.files) >= 2
        for stem in status.files:
            dest = tmp_path / "out" / (stem.download or stem.type)
            size = client.download(stem.url, dest)
            assert size == dest.stat().st_size > 44 and dest.read_bytes()[:4] == b"RIFF"
            assert not part_path(dest).exists()
        history = client.separation_history(limit=5)
        assert history[0].hash == created.hash and history[0].render_id == SEP_TYPE
        assert history[0].job_exists


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """A loopback static file server over ``tmp_path``; yields its base url."""
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_create_from_loopback_url(
    emu: Emu, audio_file: Callable[..., Path], file_server: str
) -> None:
    audio_file("remote.wav", seconds=1.0)
    with client_for(emu) as client:
        created = client.create(
            sep_type=SEP_TYPE,
            output_format=0,
            url=f"{file_server}/remote.wav",
            remote_type="direct",
        )

        def remote_done() -> str | None:
            remote = client.get_remote(created.hash)
            assert remote.status != "failed", remote.message
            return remote.hash if remote.status == "done" else None

        real_hash = wait_until(remote_done, "the url fetch")
        assert wait_settled(client, real_hash).is_finished


def test_cancel_a_waiting_job(
    make_emulator: Callable[..., Emu], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, rate_limit=False, waiting_s=60.0)
    with client_for(emu) as client:
        job_hash = submit(client, audio_file())
        assert client.get(job_hash).status == "waiting"
        message = client.cancel(job_hash)
        assert message and emu.stats["cancels"] == 1
        assert client.get(job_hash).status in ("failed", "cancelled")


def test_download_resumes_with_range(
    emu: Emu, audio_file: Callable[..., Path], tmp_path: Path
) -> None:
    statuses: list[int] = []
    hooks = {"response": [lambda r: statuses.append(r.status_code)]}
    with httpx.Client(event_hooks=hooks) as http, client_for(emu, http=http) as client:
        stem = wait_settled(client, submit(client, audio_file())).files[0]
        whole = tmp_path / "whole.wav"
        client.download(stem.url, whole)
        resumed = tmp_path / "resumed.wav"
        part_path(resumed).write_bytes(whole.read_bytes()[:5000])
        statuses.clear()
        client.download(stem.url, resumed)
    assert statuses == [206]
    assert resumed.read_bytes() == whole.read_bytes()


# ---------------------------------------------------------------------------------------------
# refusals (will never work: one request)


def test_refusals_are_not_retried(
    make_emulator: Callable[..., Emu], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(tokens=(TOKEN,), rate_limit=False)
    audio = audio_file()
    with client_for(emu, api_token="wrong-token") as stranger:
        with pytest.raises(ApiAuthError):
            submit(stranger, audio)
        with pytest.raises(ApiAuthError):
            stranger.user()
    with client_for(emu) as client:
        with pytest.raises(ApiRejected, match="premium"):
            client.create(sep_type=26, output_format=0, file=audio)  # premium-only type
        with pytest.raises(ApiRejected, match="add_opt1"):
            client.create(
                sep_type=SEP_TYPE, output_format=0, options={"add_opt1": "zz"}, file=audio
            )
    assert calls(emu, "create") == 3 and calls(emu, "user") == 1
    assert emu.jobs == {}


@pytest.mark.usefixtures("no_backoff")
def test_parallel_limit_is_slots_full(
    make_emulator: Callable[..., Emu], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(rate_limit=False, waiting_s=60.0)  # free: one job at a time
    with client_for(emu, max_attempts=3) as client:
        submit(client, audio_file())
        with pytest.raises(ApiSlotsFull):
            submit(client, audio_file("second.wav"))
    assert calls(emu, "create") == 1 + 3 and len(emu.jobs) == 1


def test_real_rate_limit_is_waited_out(make_emulator: Callable[..., Emu]) -> None:
    emu = make_emulator(rate_limit_per_min=1, rate_limit_window_s=3.0)
    with client_for(emu) as client:
        began = time.monotonic()
        client.user()
        client.user()  # over the limit: 429 + Retry-After, waited out, then answered
        assert time.monotonic() - began >= 1.0
        assert client.rate_limit.limit == 1
    limited = emu.stats["rate_limited"]
    assert limited >= 1 and calls(emu, "user") == 2 + limited


# ---------------------------------------------------------------------------------------------
# fault kinds


@pytest.mark.usefixtures("no_backoff")
@pytest.mark.parametrize("kind", ["http_5xx", "http_429", "drop_upload"])
def test_retry_later_faults_on_get_are_retried(
    emu: Emu, audio_file: Callable[..., Path], kind: str
) -> None:
    with client_for(emu) as client:
        job_hash = submit(client, audio_file())
        before = calls(emu, "get")
        emu.add_fault(Fault(kind=kind, endpoint="get", times=2, status=503))
        assert client.get(job_hash).status
    assert calls(emu, "get") - before == 3


@pytest.mark.usefixtures("no_backoff")
def test_persistent_5xx_gives_up_after_max_attempts(emu: Emu) -> None:
    emu.add_fault(Fault(kind="http_5xx", endpoint="user", times=None, status=502))
    with client_for(emu, max_attempts=3) as client, pytest.raises(ApiServerError):
        client.user()
    assert calls(emu, "user") == 3


def test_http_429_on_create_waits_retry_after(emu: Emu, audio_file: Callable[..., Path]) -> None:
    emu.add_fault(Fault(kind="http_429", endpoint="create", times=1, retry_after_s=1.0))
    with client_for(emu) as client:
        began = time.monotonic()
        job_hash = submit(client, audio_file())
        assert time.monotonic() - began >= 1.0
    assert calls(emu, "create") == 2 and list(emu.jobs) == [job_hash]


@pytest.mark.usefixtures("no_backoff")
def test_slow_get_times_out_then_succeeds(emu: Emu, audio_file: Callable[..., Path]) -> None:
    with client_for(emu, read_timeout_s=0.3) as client:
        job_hash = submit(client, audio_file())
        emu.add_fault(Fault(kind="slow", endpoint="get", times=1, delay_s=1.5))
        before = calls(emu, "get")
        assert client.get(job_hash).status
    assert calls(emu, "get") - before == 2


@pytest.mark.parametrize(
    ("fault", "created"),
    [
        (Fault(kind="http_5xx", endpoint="create", status=500), False),
        (Fault(kind="drop_upload", endpoint="create"), False),
        (Fault(kind="drop_after_create", endpoint="create"), True),
        (Fault(kind="slow", endpoint="create", delay_s=8.0), True),
    ],
    ids=["http_5xx", "drop_upload", "drop_after_create", "slow"],
)
def test_create_faults_after_send_are_outcome_unknown(
    emu: Emu, audio_file: Callable[..., Path], fault: Fault, created: bool
) -> None:
    emu.add_fault(fault)
    # long enough for a loaded machine to send the upload, shorter than the slow fault's delay
    with client_for(emu, upload_timeout_s=3.0) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            submit(client, audio_file(seconds=3.0), upload_name="n0nce7-song.wav")
        assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
        assert calls(emu, "create") == 1  # never re-sent
        if created:  # reconcile: the job shows up in the history
            wait_until(lambda: emu.jobs or None, "the job to be registered")
            history = client.separation_history()
            assert [h.hash for h in history] == list(emu.jobs)
        else:
            assert emu.jobs == {} and client.separation_history() == []


def test_drop_download_is_resumed(
    emu: Emu, audio_file: Callable[..., Path], tmp_path: Path
) -> None:
    statuses: list[int] = []
    hooks = {"response": [lambda r: statuses.append(r.status_code)]}
    with httpx.Client(event_hooks=hooks) as http, client_for(emu, http=http) as client:
        stem = wait_settled(client, submit(client, audio_file(seconds=3.0))).files[0]
        reference = tmp_path / "reference.wav"
        client.download(stem.url, reference)
        emu.add_fault(Fault(kind="drop_download", endpoint="download", times=1))
        statuses.clear()
        dest = tmp_path / "dropped.wav"
        assert client.download(stem.url, dest) == reference.stat().st_size
    assert statuses == [200, 206]
    assert dest.read_bytes() == reference.read_bytes()


def test_job_failed_is_a_status(emu: Emu, audio_file: Callable[..., Path]) -> None:
    emu.add_fault(Fault(kind="job_failed", endpoint="create", message="Bad audio (injected)"))
    with client_for(emu) as client:
        status = wait_settled(client, submit(client, audio_file()))
    assert status.is_failed and status.message == "Bad audio (injected)"


def test_hash_not_found_is_not_retried(emu: Emu, audio_file: Callable[..., Path]) -> None:
    with client_for(emu) as client:
        job_hash = submit(client, audio_file())
        emu.add_fault(Fault(kind="hash_not_found", endpoint="get"))
        before = calls(emu, "get")
        with pytest.raises(ApiNotFound):
            client.get(job_hash)
        assert calls(emu, "get") - before == 1
        with pytest.raises(ApiNotFound):
            client.get("20990101000000-0000000000-nothing.wav")


def test_done_without_files_is_not_finished(emu: Emu, audio_file: Callable[..., Path]) -> None:
    emu.add_fault(Fault(kind="done_without_files", endpoint="get", delay_s=0.5))
    seen: list[JobStatus] = []
    with client_for(emu) as client:
        job_hash = submit(client, audio_file())

        def probe() -> JobStatus | None:
            status = client.get(job_hash)
            seen.append(status)
            return status if status.is_finished else None

        wait_until(probe, "the files")
    empty_done = [s for s in seen if s.status == "done" and not s.files]
    assert empty_done and not any(s.is_finished for s in empty_done)


@pytest.mark.usefixtures("no_backoff")
def test_gate_sees_every_attempt(emu: Emu) -> None:
    gate_calls: list[tuple[Any, ...]] = []

    class Gate:
        def acquire(self, kind: str) -> None:
            gate_calls.append(("acquire", kind))

        def observe(
            self,
            limit: int | None,
            remaining: int | None,
            retry_after_s: float | None,
            *,
            route: str | None = None,
        ) -> None:
            gate_calls.append(("observe", limit, remaining, retry_after_s, route))

        def close(self) -> None:
            gate_calls.append(("close",))

    emu.add_fault(Fault(kind="http_5xx", endpoint="algorithms", times=2))
    with client_for(emu, gate=Gate()) as client:
        client.algorithms()
    assert [c for c in gate_calls if c[0] == "acquire"] == [("acquire", "algorithms")] * 3
    assert [c[-1] for c in gate_calls if c[0] == "observe"] == ["algorithms"] * 3
