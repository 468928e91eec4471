"""The typed MVSEP API client (synchronous, thread-safe for the engine's worker pool).

Every ``/api/`` call goes through :meth:`MvsepClient._call`: the optional :class:`RequestGate`
paces it, :func:`~daemon.mvsep.failures.translate_errors` and
:func:`~daemon.mvsep.failures.check_response` map every failure into :mod:`daemon.errors`,
and stamina retries :class:`~daemon.errors.RetryLater` (see :meth:`MvsepClient.create` for the
stricter create rules). The API token travels only in form fields and query strings; no
message, repr or log line built here contains it.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Protocol, Self, TypeVar, cast

import httpx
import stamina
import structlog

from daemon.errors import ApiServerError, Stopping
from daemon.mvsep.counters import ApiCounters
from daemon.mvsep.failures import (
    REDACTED,
    CallContext,
    check_response,
    make_retry_hook,
    parse_retry_after,
    translate_errors,
)
from daemon.mvsep.models import (
    Algorithm,
    CreateResult,
    HistoryEntry,
    JobStatus,
    QueueInfo,
    RemoteStatus,
    UserInfo,
)
from daemon.mvsep.streams import DownloadProgress, ProgressReader, UploadProgress, download_to

log = structlog.get_logger(__name__)

HISTORY_MAX_LIMIT = 20
_T = TypeVar("_T")
_EMPTY: Mapping[str, str] = {}


class RequestGate(Protocol):
    """Shared pacing of API requests (implemented by ``daemon.pacing``).

    ``acquire(kind)`` blocks until a request of ``kind`` (the endpoint name, which is also
    its rate-limit route: ``create``, ``get``, ``get_remote``, ``cancel``, ``algorithms``,
    ``user``, ``queue``, ``history``) may go; it is called before every attempt, retries
    included. ``observe`` receives the ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
    ``Retry-After`` headers of every answer (``None`` when absent) and the ``route`` that
    answered: MVSEP counts and limits each route on its own (60 on ``get``, 120 on
    ``history``...).
    """

    def acquire(self, kind: str) -> None: ...

    def observe(
        self,
        limit: int | None,
        remaining: int | None,
        retry_after_s: float | None,
        *,
        route: str | None = None,
    ) -> None: ...

    def close(self) -> None:
        """The process is stopping: waiting and later ``acquire`` calls raise
        :class:`~daemon.errors.Stopping`."""


@dataclass(frozen=True)
class RateLimit:
    """The last ``X-RateLimit-*`` figures the server sent (``None`` until seen)."""

    limit: int | None = None
    remaining: int | None = None


def _header_int(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name, "").strip()
    try:
        return int(value)
    except ValueError:
        return None


class MvsepClient:
    """Client of one MVSEP host (``base_url``), which serves a job for its whole life.

    Pass ``http=`` to inject an ``httpx.Client`` (e.g. with ``httpx.MockTransport``); the
    client then does not close it. Timeouts are set per request: ``connect_timeout_s`` and
    ``read_timeout_s`` for every call, ``upload_timeout_s`` for the write/read phases of
    ``create``. Calls other than ``create`` retry :class:`~daemon.errors.RetryLater` up to
    ``max_attempts`` times within ``retry_timeout_s`` (exponential backoff with jitter, or the
    server's ``Retry-After`` when it is within ``retry_timeout_s``).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_token: str,
        http: httpx.Client | None = None,
        connect_timeout_s: float = 30,
        read_timeout_s: float = 120,
        upload_timeout_s: float = 1200,
        gate: RequestGate | None = None,
        max_attempts: int = 5,
        retry_timeout_s: float = 60,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = api_token
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(follow_redirects=True)
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._upload_timeout = httpx.Timeout(
            upload_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s
        )
        self._gate = gate
        self._max_attempts = max(1, max_attempts)
        self._retry_timeout_s = retry_timeout_s
        self._retry_hook = make_retry_hook(retry_timeout_s)
        self._stopping = threading.Event()  # shared with every with_base_url() sibling
        self.rate_limit = RateLimit()
        self.counters = ApiCounters(gate=gate)  # what /metrics reads (siblings share it)

    def __repr__(self) -> str:
        return f"MvsepClient(base_url={self.base_url!r}, api_token={REDACTED!r})"

    def close(self) -> None:
        """Close the HTTP client if this client created it (siblings from
        :meth:`with_base_url` never close the shared pool: their origin does)."""
        if self._owns_http:
            self._http.close()

    def with_base_url(self, base_url: str) -> MvsepClient:
        """A client of another host (an MVSEP region) sharing this one's HTTP pool, gate,
        token, timeouts, retry settings and :meth:`interrupt`.

        A job lives on the host that created it: its ``get`` and its result files must go
        there even when the configured ``base_url`` has changed since. ``self`` when the host
        is the same. Closing the sibling does not close the shared pool.
        """
        url = base_url.rstrip("/")
        if url == self.base_url:
            return self
        sibling = copy.copy(self)
        sibling.base_url = url
        sibling._owns_http = False
        sibling.rate_limit = RateLimit()
        return sibling

    def set_token(self, api_token: str) -> None:
        """Use another API token from now on (SIGHUP after the token was replaced); clients
        :meth:`with_base_url` makes later copy it."""
        self._token = api_token

    def interrupt(self) -> None:
        """The process is stopping: no request is sent from now on, and calls waiting for
        their turn in the gate end at once; both raise :class:`~daemon.errors.Stopping`.
        (A request already on the wire runs to its answer or its timeout.)"""
        self._stopping.set()
        if self._gate is not None:
            self._gate.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -----------------------------------------------------------------------------------------
    # separation

    def create(
        self,
        *,
        sep_type: int,
        output_format: int,
        options: Mapping[str, str] = _EMPTY,
        file: Path | IO[bytes] | None = None,
        upload_name: str | None = None,
        url: str | None = None,
        remote_type: str | None = None,
        is_demo: bool = False,
        progress: UploadProgress | None = None,
    ) -> CreateResult:
        """Start a separation of ``file`` (streamed from disk) or of a remote ``url``.

        ``file`` is a path (opened afresh for each attempt) or a file already open for
        reading in binary mode (read from its start at each attempt, left open): the caller
        that checked which file it holds sends exactly that one, even if another is put at
        its path meanwhile.

        Never pays twice: a create is retried only when it is *known* that nothing was
        created — the connection could not be opened (``httpx.ConnectError`` /
        ``ConnectTimeout`` / ``PoolTimeout``: not a byte was sent), the server answered 429
        (refused before processing) or refused for the parallel-job limit (``ApiSlotsFull``).
        Anything that fails once the request may have reached the server — a read/write
        timeout, a dropped connection, a protocol error, a 5xx, an unreadable success answer —
        raises :class:`~daemon.errors.OutcomeUnknown` without retrying: MVSEP may have created
        (and charged) the job, so the caller must reconcile through ``separation_history``
        (``upload_name`` carries a per-job nonce for that) instead of re-sending. 400/401 and
        ``success: false`` raise :class:`~daemon.errors.WillNeverWork` subclasses.
        """
        if (file is None) == (url is None):
            raise ValueError("create needs exactly one of file= or url=")
        fields: dict[str, str] = {
            "api_token": self._token,
            "sep_type": str(sep_type),
            "output_format": str(output_format),
            **{str(k): str(v) for k, v in options.items()},
        }
        if is_demo:
            fields["is_demo"] = "1"
        if url is not None:
            fields["url"] = url
            if remote_type is not None:
                fields["remote_type"] = remote_type
        ctx = self._context("create", "POST", "/api/separation/create", create=True)
        for attempt in stamina.retry_context(on=self._retry_hook, **self._retry_limits()):
            with attempt:
                if file is None:
                    body = self._send(ctx, data=fields, timeout=self._upload_timeout)
                else:
                    body = self._upload(ctx, fields, file, upload_name, progress)
                with translate_errors(ctx):
                    return CreateResult.model_validate(_data(body))
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _upload(
        self,
        ctx: CallContext,
        fields: dict[str, str],
        file: Path | IO[bytes],
        upload_name: str | None,
        progress: UploadProgress | None,
    ) -> Any:
        """One multipart attempt, streaming ``file`` from disk (a path: a fresh handle per
        attempt; an open file: from its start)."""
        if isinstance(file, Path):
            with open(file, "rb") as raw:
                return self._upload_from(ctx, fields, raw, upload_name or file.name, progress)
        file.seek(0)
        name = upload_name or Path(str(getattr(file, "name", "audio"))).name
        return self._upload_from(ctx, fields, file, name, progress)

    def _upload_from(
        self,
        ctx: CallContext,
        fields: dict[str, str],
        raw: IO[bytes],
        name: str,
        progress: UploadProgress | None,
    ) -> Any:
        total = os.fstat(raw.fileno()).st_size
        reader = cast(
            IO[bytes], ProgressReader(cast(BinaryIO, raw), total=total, progress=progress)
        )
        files = {"audiofile": (name, reader)}
        return self._send(ctx, data=fields, files=files, timeout=self._upload_timeout)

    def get(self, hash: str) -> JobStatus:
        """Status of job ``hash``; raises :class:`~daemon.errors.ApiNotFound` when unknown.

        A ``failed`` job is returned (``status == "failed"``, ``message`` = reason), not
        raised. Check :attr:`JobStatus.is_finished` before downloading.
        """
        return self._call(
            "get", "GET", "/api/separation/get", _parse_job, params=self._q(hash=hash)
        )

    def get_remote(self, hash: str) -> RemoteStatus:
        """Status of a url-submitted job; when done, ``.hash`` is the hash for :meth:`get`."""
        path = "/api/separation/get-remote"
        return self._call("get_remote", "GET", path, _parse_remote, params=self._q(hash=hash))

    def cancel(self, hash: str) -> str:
        """Cancel a job that has not started (credits are refunded); the server's message."""
        data = {"api_token": self._token, "hash": hash}
        return self._call("cancel", "POST", "/api/separation/cancel", _parse_message, data=data)

    # -----------------------------------------------------------------------------------------
    # site and account

    def algorithms(self) -> list[Algorithm]:
        """The live catalogue of separation types (``render_id`` is the ``sep_type``)."""
        return self._call("algorithms", "GET", "/api/app/algorithms", _parse_algorithms)

    def user(self) -> UserInfo:
        """The account: credits left (``premium_minutes``), premium switch, running jobs."""
        user = self._call("user", "GET", "/api/app/user", _parse_user, params=self._q())
        return self.counters.saw_user(user)

    def queue(self) -> QueueInfo:
        """Current queue lengths per plan (shape undocumented; kept as received)."""
        return self._call("queue", "GET", "/api/app/queue", _parse_queue, params=self._q())

    def separation_history(self, *, start: int = 0, limit: int = 20) -> list[HistoryEntry]:
        """The account's recent jobs, newest first; ``limit`` is clamped to 1..20."""
        limit = min(max(1, limit), HISTORY_MAX_LIMIT)
        params = self._q(start=str(max(0, start)), limit=str(limit))
        path = "/api/app/separation_history"
        return self._call("history", "GET", path, _parse_history, params=params)

    # -----------------------------------------------------------------------------------------
    # result files

    def download(self, url: str, dest: Path, *, progress: DownloadProgress | None = None) -> int:
        """Stream a result file to ``dest`` (via ``dest.part``, fsync, ``os.replace``); bytes.

        Resumes an existing ``.part`` with a ``Range`` request when the server answers 206
        (otherwise starts over). A body shorter than announced raises
        :class:`~daemon.errors.ApiConnectionError` and keeps the ``.part``; retries (stamina)
        resume it. Result urls are not API calls: they do not pass the gate. Disk errors
        propagate as ``OSError``.
        """
        if url.startswith("/"):
            url = self.base_url + url
        ctx = self._context("download", "GET", httpx.URL(url).path)
        for attempt in stamina.retry_context(on=self._retry_hook, **self._retry_limits()):
            with attempt, translate_errors(ctx):
                began = time.monotonic()
                size = download_to(
                    self._http, url, dest, ctx=ctx, timeout=self._timeout, progress=progress
                )
                log.debug(
                    "mvsep.download",
                    path=ctx.path,
                    size=size,
                    elapsed_s=round(time.monotonic() - began, 3),
                )
                return size
        raise AssertionError("unreachable: stamina re-raises the last error")

    # -----------------------------------------------------------------------------------------
    # plumbing

    def _context(
        self, endpoint: str, method: str, path: str, *, create: bool = False
    ) -> CallContext:
        return CallContext(endpoint, method, path, secret=self._token, create=create)

    def _retry_limits(self) -> dict[str, Any]:
        return {"attempts": self._max_attempts, "timeout": self._retry_timeout_s}

    def _q(self, **params: str) -> dict[str, str]:
        return {**params, "api_token": self._token}

    def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        parse: Callable[[CallContext, Any], _T],
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> _T:
        """One idempotent API call with stamina retries; ``parse`` turns the body into models.

        Parsing happens inside the attempt, so a malformed answer (``ApiServerError``) is
        retried like any other transient failure.
        """
        ctx = self._context(endpoint, method, path)
        for attempt in stamina.retry_context(on=self._retry_hook, **self._retry_limits()):
            with attempt:
                body = self._send(ctx, params=params, data=data, timeout=self._timeout)
                with translate_errors(ctx):
                    return parse(ctx, body)
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _send(
        self,
        ctx: CallContext,
        *,
        timeout: httpx.Timeout,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, IO[bytes]]] | None = None,
    ) -> Any:
        """One attempt: gate, request, observe headers, map errors, log (never the token)."""
        if self._stopping.is_set():
            raise Stopping(f"not sent ({ctx.endpoint}): the process is stopping")
        if self._gate is not None:
            self._gate.acquire(ctx.endpoint)
        began = time.monotonic()
        status: int | None = None
        try:
            with translate_errors(ctx):
                response = self._http.request(
                    ctx.method,
                    self.base_url + ctx.path,
                    params=params,
                    data=data,
                    files=files,
                    timeout=timeout,
                )
                status = response.status_code
                self._observe(response, ctx.endpoint)
                return check_response(ctx, response)
        finally:
            self.counters.record(ctx.endpoint, status)
            log.debug(
                "mvsep.request",
                endpoint=ctx.endpoint,
                method=ctx.method,
                path=ctx.path,
                status=status,
                elapsed_s=round(time.monotonic() - began, 3),
            )

    def _observe(self, response: httpx.Response, route: str) -> None:
        limit = _header_int(response.headers, "X-RateLimit-Limit")
        remaining = _header_int(response.headers, "X-RateLimit-Remaining")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if limit is not None or remaining is not None:
            self.rate_limit = RateLimit(limit=limit, remaining=remaining)
        if self._gate is not None:
            self._gate.observe(limit, remaining, retry_after, route=route)


def _data(body: Any) -> Any:
    """``body["data"]`` when the body is an object, else the body itself."""
    if isinstance(body, Mapping):
        return body.get("data")
    return body


def _status_fields(body: Any) -> dict[str, Any]:
    """Flatten ``{"status": ..., "data": {...}}`` into one mapping."""
    data = _data(body)
    merged = dict(data) if isinstance(data, Mapping) else {}
    if isinstance(body, Mapping) and "status" in body:
        merged["status"] = body["status"]
    return merged


def _expect_list(ctx: CallContext, items: Any) -> list[Any]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiServerError(ctx.describe("expected a list"), endpoint=ctx.endpoint)
    return items


def _parse_job(ctx: CallContext, body: Any) -> JobStatus:
    return JobStatus.model_validate(_status_fields(body))


def _parse_remote(ctx: CallContext, body: Any) -> RemoteStatus:
    return RemoteStatus.model_validate(_status_fields(body))


def _parse_message(ctx: CallContext, body: Any) -> str:
    data = _data(body)
    for source in (data, body):
        if isinstance(source, Mapping) and isinstance(source.get("message"), str):
            return cast(str, source["message"])
    return "cancelled"


def _parse_algorithms(ctx: CallContext, body: Any) -> list[Algorithm]:
    items = body if isinstance(body, list) else _data(body)
    return [Algorithm.model_validate(item) for item in _expect_list(ctx, items)]


def _parse_user(ctx: CallContext, body: Any) -> UserInfo:
    return UserInfo.model_validate(_data(body))


def _parse_queue(ctx: CallContext, body: Any) -> QueueInfo:
    data = _data(body)
    if not isinstance(data, Mapping) or not ({"queue", "plan"} & set(data)):
        data = body
    return QueueInfo.model_validate(data)


def _parse_history(ctx: CallContext, body: Any) -> list[HistoryEntry]:
    return [HistoryEntry.model_validate(item) for item in _expect_list(ctx, _data(body))]


__all__ = ["MvsepClient", "RateLimit", "RequestGate"]
