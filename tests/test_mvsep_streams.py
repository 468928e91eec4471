"""Streaming uploads and resumable downloads: correctness, resume rules, bounded memory."""

from __future__ import annotations

import os
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stamina

from daemon.errors import ApiConnectionError, ApiNotFound, ApiServerError
from daemon.mvsep import MvsepClient
from daemon.mvsep.streams import ProgressReader, part_path

TOKEN = "tok-SECRET-transfer"
URL = "https://files.test/storage/H1/vocals.flac"
DATA = os.urandom(300_000)


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class FileServer:
    """Serves ``DATA``; honours Range unless told not to; can cut the body short once."""

    def __init__(
        self,
        *,
        ranges: bool = True,
        cut_at: int | None = None,
        drop_at: int | None = None,
        status: int = 200,
    ) -> None:
        self.ranges = ranges
        self.cut_at = cut_at
        self.drop_at = drop_at
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, text="nope")
        start = self._range_start(request)
        headers = {"Content-Length": str(len(DATA) - start)}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"
        if start >= len(DATA) and self.ranges:
            return httpx.Response(416, headers={"Content-Range": f"bytes */{len(DATA)}"})
        return httpx.Response(status, headers=headers, content=self._body(start))

    def _range_start(self, request: httpx.Request) -> int:
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        return int(match.group(1)) if match and self.ranges else 0

    def _body(self, start: int) -> Iterator[bytes]:
        body = DATA[start:]
        if self.cut_at is not None:
            body, self.cut_at = body[: self.cut_at - start], None
        drop_at, self.drop_at = self.drop_at, None
        for i in range(0, len(body), 8192):
            if drop_at is not None and start + i >= drop_at:
                raise httpx.ReadError("connection reset")
            yield body[i : i + 8192]

    def client(self, **kwargs: int) -> MvsepClient:
        http = httpx.Client(transport=httpx.MockTransport(self))
        return MvsepClient(base_url="https://mvsep.test", api_token=TOKEN, http=http, **kwargs)


def test_download_whole_file(tmp_path: Path) -> None:
    server = FileServer()
    dest = tmp_path / "out" / "vocals.flac"
    seen: list[tuple[int, int | None]] = []
    size = server.client().download(URL, dest, progress=lambda d, t: seen.append((d, t)))
    assert size == len(DATA) and dest.read_bytes() == DATA
    assert not part_path(dest).exists()
    assert seen[-1] == (len(DATA), len(DATA))
    assert "Range" not in server.requests[0].headers
    assert server.requests[0].headers["Accept-Encoding"] == "identity"


def test_resume_existing_part_with_range(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    part_path(dest).write_bytes(DATA[:100_000])
    server = FileServer()
    assert server.client().download(URL, dest) == len(DATA)
    assert server.requests[0].headers["Range"] == "bytes=100000-"
    assert dest.read_bytes() == DATA


def test_restart_when_server_ignores_range(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    part_path(dest).write_bytes(b"stale junk" * 1000)
    server = FileServer(ranges=False)
    server.client().download(URL, dest)
    assert server.requests[0].headers["Range"] == "bytes=10000-"
    assert dest.read_bytes() == DATA


def test_complete_part_answered_416_is_finished(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    part_path(dest).write_bytes(DATA)
    server = FileServer()
    assert server.client().download(URL, dest) == len(DATA)
    assert dest.read_bytes() == DATA and len(server.requests) == 1


def test_oversized_part_is_dropped(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    part_path(dest).write_bytes(DATA + b"extra")
    server = FileServer()
    server.client().download(URL, dest)
    assert dest.read_bytes() == DATA
    assert [r.headers.get("Range") for r in server.requests] == [f"bytes={len(DATA) + 5}-", None]


def test_short_body_keeps_part_then_resumes(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    server = FileServer(cut_at=123_456)
    with pytest.raises(ApiConnectionError, match="short body"):
        server.client(max_attempts=1).download(URL, dest)
    assert part_path(dest).read_bytes() == DATA[:123_456] and not dest.exists()
    server.client(max_attempts=1).download(URL, dest)
    assert server.requests[-1].headers["Range"] == "bytes=123456-"
    assert dest.read_bytes() == DATA


def test_short_body_is_retried_with_resume(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    server = FileServer(cut_at=50_000)
    assert server.client(max_attempts=3).download(URL, dest) == len(DATA)
    assert [r.headers.get("Range") for r in server.requests] == [None, "bytes=50000-"]
    assert dest.read_bytes() == DATA


def test_dropped_connection_mid_body_resumes(tmp_path: Path) -> None:
    dest = tmp_path / "vocals.flac"
    server = FileServer(drop_at=8192 * 5)
    server.client(max_attempts=3).download(URL, dest)
    assert [r.headers.get("Range") for r in server.requests] == [None, f"bytes={8192 * 5}-"]
    assert dest.read_bytes() == DATA


def test_missing_result_is_not_retried(tmp_path: Path) -> None:
    server = FileServer(status=404)
    with pytest.raises(ApiNotFound):
        server.client(max_attempts=3).download(URL, tmp_path / "x")
    assert len(server.requests) == 1


def test_server_error_is_retried(tmp_path: Path) -> None:
    server = FileServer(status=503)
    with pytest.raises(ApiServerError):
        server.client(max_attempts=3).download(URL, tmp_path / "x")
    assert len(server.requests) == 3


def test_relative_url_uses_base(tmp_path: Path) -> None:
    server = FileServer()
    server.client().download("/storage/x.mp3", tmp_path / "x.mp3")
    assert str(server.requests[0].url) == "https://mvsep.test/storage/x.mp3"


# ---------------------------------------------------------------------------------------------
# memory stays flat


BIG = 48 * 1024 * 1024
CAP = 8 * 1024 * 1024


def test_download_memory_does_not_grow(tmp_path: Path) -> None:
    chunk = b"\0" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        body = (chunk for _ in range(BIG // len(chunk)))
        return httpx.Response(200, headers={"Content-Length": str(BIG)}, content=body)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = MvsepClient(base_url="https://mvsep.test", api_token=TOKEN, http=http)
    tracemalloc.start()
    try:
        size = client.download(URL, tmp_path / "big.wav")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == BIG == (tmp_path / "big.wav").stat().st_size
    assert peak < CAP


class StreamingSink(httpx.BaseTransport):
    """Consumes the request body chunk by chunk, as a real socket would."""

    def __init__(self) -> None:
        self.received = 0
        self.largest_chunk = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        for chunk in request.stream:
            self.received += len(chunk)
            self.largest_chunk = max(self.largest_chunk, len(chunk))
        return httpx.Response(200, json={"success": True, "data": {"hash": "H", "link": "l"}})


def test_upload_memory_does_not_grow(tmp_path: Path) -> None:
    audio = tmp_path / "big.wav"
    with open(audio, "wb") as out:
        out.truncate(BIG)
    sink = StreamingSink()
    client = MvsepClient(
        base_url="https://mvsep.test", api_token=TOKEN, http=httpx.Client(transport=sink)
    )
    last: list[int] = [0]
    tracemalloc.start()
    try:
        client.create(
            sep_type=1,
            output_format=0,
            file=audio,
            progress=lambda sent, total: last.__setitem__(0, sent),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.received > BIG and last[0] == BIG
    assert peak < CAP and sink.largest_chunk <= 1024 * 1024


def test_progress_reader_rewinds(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    calls: list[tuple[int, int]] = []
    with open(path, "rb") as raw:
        reader = ProgressReader(raw, total=100, progress=lambda s, t: calls.append((s, t)))
        assert reader.read(60) == b"x" * 60 and reader.tell() == 60
        reader.seek(0)
        assert reader.sent == 0
        reader.read(-1)
        assert os.fstat(reader.fileno()).st_size == 100
    assert calls == [(60, 100), (100, 100)]
