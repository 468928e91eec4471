"""The one place where transport, HTTP and JSON failures become :mod:`daemon.errors` errors.

Mapping (``create`` differs where marked, see :func:`transport_error` / :func:`check_response`):

====================================================  ========================================
what happened                                         raised
====================================================  ========================================
``httpx.ConnectTimeout`` / ``PoolTimeout``            ``ApiTimeout`` (nothing was sent)
other ``httpx.TimeoutException``                      ``ApiTimeout``; create: ``OutcomeUnknown``
``httpx.ConnectError``                                ``ApiConnectionError`` (nothing was sent)
other ``httpx.TransportError`` (read/write/protocol)  ``ApiConnectionError``;
                                                      create: ``OutcomeUnknown``
HTTP 429                                              ``ApiRateLimited(retry_after_s)``
HTTP 401                                              ``ApiAuthError``
HTTP 5xx                                              ``ApiServerError``; create: ``OutcomeUnknown``
body not JSON, HTTP 4xx                               ``ApiRejected``
body not JSON, any other status (HTML under 200...)   ``ApiServerError``; create: ``OutcomeUnknown``
``status: "not_found"``                               ``ApiNotFound``
error text has "hash not found" / "separation not     ``ApiNotFound`` ("File or File Hash not
found" (any of the three body shapes)                 found" on the real service)
``success: false`` or HTTP 4xx, text has "parallel"   ``ApiSlotsFull``
... text names the api token (400/403)                ``ApiAuthError``
... anything else                                     ``ApiRejected``
success but fields missing / wrong shape              ``ApiServerError``; create: ``OutcomeUnknown``
====================================================  ========================================

``success`` counts as false when it is ``False``, ``"false"``, ``0`` or ``"0"`` (create answers
``"true"``, a string; see :func:`is_success`).

Secrets: every message is built here from the call's method and *path* (never the query,
which carries ``api_token``) and passed through :meth:`CallContext.redact`. A foreign cause is
chained (``raise ... from exc``) only when its whole traceback text is free of the token.
"""

from __future__ import annotations

import email.utils
import re
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
from pydantic import ValidationError

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

REDACTED = "***"
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TOKEN_WORDS = re.compile(r"api[_ ]?token|api key|unauthori[sz]ed|invalid token", re.IGNORECASE)
_NOT_FOUND_WORDS = re.compile(r"hash not found|separation not found", re.IGNORECASE)
_MAX_MESSAGE = 500
_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no", ""})


@dataclass(frozen=True)
class CallContext:
    """What an error message may say about a call: endpoint name, method, path (no query)."""

    endpoint: str
    method: str
    path: str
    secret: str = ""
    create: bool = False

    def redact(self, text: str) -> str:
        """``text`` with the API token replaced (a last line of defence)."""
        if self.secret and self.secret in text:
            text = text.replace(self.secret, REDACTED)
        return text

    def describe(self, detail: str) -> str:
        """``"get: GET /api/separation/get: <detail>"``, redacted and bounded."""
        text = f"{self.endpoint}: {self.method} {self.path}: {detail}"
        return self.redact(text)[:_MAX_MESSAGE]


def safe_cause(ctx: CallContext, exc: BaseException) -> BaseException | None:
    """``exc`` if its full traceback text is free of the token, else ``None`` (do not chain)."""
    if not ctx.secret:
        return exc
    text = "".join(traceback.format_exception(exc))
    return None if ctx.secret in text else exc


def _unknown(ctx: CallContext, detail: str, status_code: int | None = None) -> OutcomeUnknown:
    return OutcomeUnknown(
        ctx.describe(f"{detail}; the job may have been created, reconcile before re-sending"),
        status_code=status_code,
        endpoint=ctx.endpoint,
    )


def transport_error(ctx: CallContext, exc: httpx.TransportError) -> ApiError:
    """Map an httpx transport failure; for ``create`` only a nothing-sent failure may retry."""
    detail = type(exc).__name__
    if ctx.create and not isinstance(exc, _NOTHING_SENT):
        return _unknown(ctx, f"{detail} after the request was sent")
    if isinstance(exc, httpx.TimeoutException):
        return ApiTimeout(ctx.describe(f"timed out ({detail})"), endpoint=ctx.endpoint)
    return ApiConnectionError(ctx.describe(f"connection failed ({detail})"), endpoint=ctx.endpoint)


@contextmanager
def translate_errors(ctx: CallContext) -> Iterator[None]:
    """Re-raise foreign failures (httpx, pydantic, OS) inside the block as :class:`ApiError`."""
    try:
        yield
    except ApiError:
        raise
    except httpx.TransportError as exc:
        raise transport_error(ctx, exc) from safe_cause(ctx, exc)
    except ValidationError as exc:
        # pydantic messages quote the input, which may hold the token: never chain them.
        raise shape_error(ctx, exc) from None
    except httpx.StreamError as exc:
        raise ApiConnectionError(
            ctx.describe(f"stream error ({type(exc).__name__})"), endpoint=ctx.endpoint
        ) from safe_cause(ctx, exc)


def shape_error(ctx: CallContext, exc: ValidationError) -> ApiError:
    """A success answer whose fields do not fit the model (locations only, no input values)."""
    where = sorted({".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()})
    detail = f"unexpected answer shape at {', '.join(where[:5])}"
    if ctx.create:
        return _unknown(ctx, detail)
    return ApiServerError(ctx.describe(detail), endpoint=ctx.endpoint)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date); ``None`` if absent."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_text(body: Any) -> str:
    """The human message of an error body, whichever of the three shapes it uses."""
    if not isinstance(body, Mapping):
        return ""
    parts: list[str] = []
    errors = body.get("errors")
    if errors:
        parts.extend(_flatten(errors))
    data = body.get("data")
    if isinstance(data, Mapping) and data.get("message"):
        parts.extend(_flatten(data["message"]))
    if body.get("message"):
        parts.extend(_flatten(body["message"]))
    return "; ".join(p for p in parts if p)


def _flatten(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, item in value.items():
            out.extend(f"{key}: {text}" for text in _flatten(item))
        return out
    if isinstance(value, list | tuple):
        return [text for item in value for text in _flatten(item)]
    return [] if value is None else [str(value)]


def is_success(value: Any) -> bool | None:
    """``success`` as the API sends it: ``True``/``False``, ``"true"``/``"false"``, ``1``/``0``,
    ``"1"``/``"0"`` (create answers the string ``"true"``); ``None`` when absent or unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def check_response(ctx: CallContext, response: httpx.Response) -> Any:
    """Return the decoded JSON body of a successful answer, or raise the mapped error."""
    status = response.status_code
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ApiRateLimited(
            ctx.describe(f"HTTP 429 rate limited (retry after {retry_after}s)"),
            retry_after_s=retry_after,
            endpoint=ctx.endpoint,
        )
    if status == 401:
        raise ApiAuthError(
            ctx.describe("HTTP 401: the API token was refused"),
            status_code=401,
            endpoint=ctx.endpoint,
        )
    if status >= 500:
        _raise_server(ctx, f"HTTP {status}", status)
    try:
        body = response.json()
    except ValueError:
        if 400 <= status < 500:
            raise ApiRejected(
                ctx.describe(f"HTTP {status} with a non-JSON body"),
                status_code=status,
                endpoint=ctx.endpoint,
            ) from None
        _raise_server(ctx, f"HTTP {status} with a non-JSON body", status)
    _raise_for_body(ctx, status, body)
    return body


def _raise_server(ctx: CallContext, detail: str, status: int) -> NoReturn:
    if ctx.create:
        raise _unknown(ctx, detail, status)
    raise ApiServerError(ctx.describe(detail), status_code=status, endpoint=ctx.endpoint)


def _raise_for_body(ctx: CallContext, status: int, body: Any) -> None:
    """Raise for ``status: not_found`` and for error bodies (HTTP >= 400 or success false)."""
    if not isinstance(body, Mapping):
        if status >= 400:
            raise ApiRejected(
                ctx.describe(f"HTTP {status}"), status_code=status, endpoint=ctx.endpoint
            )
        return
    if body.get("status") == "not_found":
        raise ApiNotFound(
            ctx.describe("unknown or expired hash (status not_found)"),
            status_code=status,
            endpoint=ctx.endpoint,
        )
    if status < 400 and is_success(body.get("success", True)) is not False:
        return
    raise body_error(ctx, status, error_text(body))


def body_error(ctx: CallContext, status: int, text: str) -> ApiError:
    """The error for a refused request with server text ``text``."""
    detail = f"HTTP {status}: {text or 'success false without a message'}"
    if _NOT_FOUND_WORDS.search(text):
        return ApiNotFound(ctx.describe(detail), status_code=status, endpoint=ctx.endpoint)
    if "parallel" in text.lower():
        return ApiSlotsFull(ctx.describe(detail), status_code=status, endpoint=ctx.endpoint)
    if status in (400, 403) and _TOKEN_WORDS.search(text):
        return ApiAuthError(ctx.describe(detail), status_code=status, endpoint=ctx.endpoint)
    return ApiRejected(ctx.describe(detail), status_code=status, endpoint=ctx.endpoint)


def retry_wait(exc: Exception) -> bool | float:
    """stamina backoff hook: retry :class:`RetryLater`; wait ``Retry-After`` when given."""
    if isinstance(exc, ApiRateLimited) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return isinstance(exc, RetryLater)


def make_retry_hook(max_wait_s: float) -> Callable[[Exception], bool | float]:
    """A :func:`retry_wait` that gives up (re-raises) when Retry-After exceeds ``max_wait_s``.

    Waiting longer than the whole retry budget would only block a worker thread; the caller
    gets the :class:`ApiRateLimited` and schedules the job itself.
    """

    def hook(exc: Exception) -> bool | float:
        wait = retry_wait(exc)
        if not isinstance(wait, bool) and wait > max_wait_s:
            return False
        return wait

    return hook
