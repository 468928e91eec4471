"""Streaming file transfer: an upload reader that reports progress, resumable downloads.

Neither direction holds a whole file in memory: httpx reads the upload in 64 KiB chunks from
:class:`ProgressReader`, and :func:`download_to` writes ``iter_bytes`` chunks to
``dest + ".part"`` before an fsync and an ``os.replace`` onto ``dest``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from daemon.errors import (
    ApiConnectionError,
    ApiNotFound,
    ApiRateLimited,
    ApiRejected,
    ApiServerError,
)
from daemon.filing import fsync_dir
from daemon.mvsep.failures import CallContext, parse_retry_after

UploadProgress = Callable[[int, int], None]
DownloadProgress = Callable[[int, int | None], None]
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", re.IGNORECASE)


class ProgressReader:
    """Wrap an open binary file; every ``read`` reports ``(sent, total)`` to ``progress``.

    ``fileno``/``seek``/``tell`` pass through so httpx can size the multipart body (a real
    ``Content-Length``) and rewind it; a rewind restarts the count.
    """

    def __init__(self, raw: BinaryIO, *, total: int, progress: UploadProgress | None) -> None:
        self._raw = raw
        self._total = total
        self._progress = progress
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (httpx asks for 64 KiB at a time)."""
        chunk = self._raw.read(size)
        if chunk:
            self.sent += len(chunk)
            if self._progress is not None:
                self._progress(self.sent, self._total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._raw.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()


def part_path(dest: Path) -> Path:
    """Where a download of ``dest`` is written before it is complete."""
    return dest.with_name(dest.name + ".part")


@dataclass(frozen=True)
class _Plan:
    start: int  # where the body's first byte goes in the .part file
    total: int | None  # the complete file's size, when the server says


class _Restart(Exception):
    """The .part cannot be resumed: drop it and download from the start."""


def download_to(
    http: httpx.Client,
    url: str,
    dest: Path,
    *,
    ctx: CallContext,
    timeout: httpx.Timeout,
    progress: DownloadProgress | None,
) -> int:
    """Download ``url`` to ``dest`` (resuming ``dest.part`` when the server allows); bytes."""
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = _fetch(http, url, part, ctx=ctx, timeout=timeout, progress=progress)
    except _Restart:
        part.unlink(missing_ok=True)
        size = _fetch(http, url, part, ctx=ctx, timeout=timeout, progress=progress)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return size


def _fetch(
    http: httpx.Client,
    url: str,
    part: Path,
    *,
    ctx: CallContext,
    timeout: httpx.Timeout,
    progress: DownloadProgress | None,
) -> int:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with http.stream("GET", url, headers=headers, timeout=timeout) as response:
        if response.status_code == 416 and offset:
            if _range_total(response) == offset:
                return offset  # the .part is already complete (a crash before the rename)
            raise _Restart
        check_download_status(ctx, response)
        plan = _plan(ctx, response, offset)
        size = _write_body(response, part, plan, progress)
    if plan.total is not None and size != plan.total:
        if size > plan.total:
            part.unlink(missing_ok=True)
            raise ApiServerError(
                ctx.describe(f"body longer than announced ({plan.total})"),
                status_code=response.status_code,
                endpoint=ctx.endpoint,
            )
        raise ApiConnectionError(
            ctx.describe(f"short body: {size} of {plan.total} bytes, .part kept for resume"),
            status_code=response.status_code,
            endpoint=ctx.endpoint,
        )
    return size


def check_download_status(ctx: CallContext, response: httpx.Response) -> None:
    """Raise the mapped error unless the answer is 200 or 206."""
    status = response.status_code
    if status in (200, 206):
        return
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ApiRateLimited(
            ctx.describe("HTTP 429 rate limited"), retry_after_s=retry_after, endpoint=ctx.endpoint
        )
    if status >= 500:
        raise ApiServerError(
            ctx.describe(f"HTTP {status}"), status_code=status, endpoint=ctx.endpoint
        )
    if status in (404, 410):
        raise ApiNotFound(
            ctx.describe(f"HTTP {status}: result file gone"),
            status_code=status,
            endpoint=ctx.endpoint,
        )
    raise ApiRejected(ctx.describe(f"HTTP {status}"), status_code=status, endpoint=ctx.endpoint)


def _range_total(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if match is None or match.group(2) == "*":
        return None
    return int(match.group(2))


def _content_length(response: httpx.Response) -> int | None:
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # iter_bytes decodes: the header counts encoded bytes
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _plan(ctx: CallContext, response: httpx.Response, offset: int) -> _Plan:
    """Where to write: append at ``offset`` on a matching 206, else from zero."""
    length = _content_length(response)
    if response.status_code != 206:
        return _Plan(start=0, total=length)
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    start = int(match.group(1)) if match and match.group(1) else None
    if start != offset:
        raise _Restart
    total = _range_total(response)
    if total is None and length is not None:
        total = offset + length
    return _Plan(start=offset, total=total)


def _write_body(
    response: httpx.Response, part: Path, plan: _Plan, progress: DownloadProgress | None
) -> int:
    """Stream the body into ``part`` from ``plan.start``; fsync; return the part's size."""
    mode = "r+b" if plan.start and part.exists() else "wb"
    with open(part, mode) as out:
        out.seek(plan.start)
        out.truncate(plan.start)
        done = plan.start
        try:
            for chunk in response.iter_bytes():
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, plan.total)
        finally:
            out.flush()
            os.fsync(out.fileno())
    return done
