"""Dropping connections from an ASGI app (faults ``drop_upload``, ``drop_after_create``,
``drop_download``), and a slow uplink (``throttle_upload``: each piece of the request body
is taken ``delay_s / 20`` after the last, so a body larger than the socket buffers keeps
the client sending for minutes).

uvicorn answers 500 when an app fails before starting its response, so a "drop" here sends
the response head (status 200 and a Content-Length) and then fails: uvicorn closes the
socket and the client sees the body cut short (``httpx.RemoteProtocolError``, or
``ReadError``/``WriteError`` when it was still sending).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from daemon.emulator.state import EmulatorState

ENDPOINTS_BY_PATH = {
    "/api/separation/create": "create",
    "/api/separation/get": "get",
    "/api/separation/get-remote": "get_remote",
    "/api/separation/cancel": "cancel",
    "/api/app/algorithms": "algorithms",
    "/api/app/user": "user",
    "/api/app/login": "login",
    "/api/app/queue": "queue",
    "/api/app/separation_history": "history",
}


class DroppedConnection(Exception):
    """Raised on purpose to make uvicorn close the connection."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection) and not isinstance(
            getattr(exc, "__cause__", None), DroppedConnection
        )


def install_log_filter() -> None:
    """Keep uvicorn from logging a traceback for every deliberate drop (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


def endpoint_of(path: str) -> str:
    """The fault endpoint name of a request path."""
    if path.startswith("/storage/"):
        return "download"
    return ENDPOINTS_BY_PATH.get(path, "other")


async def _send_head(send: Send, length: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(length).encode()),
            ],
        }
    )


class DropLayer:
    """Outermost ASGI layer: drops connections when a drop fault says so."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        if self.state.faults.take(endpoint, {"drop_upload"}) is not None:
            self.state.count_call(endpoint)
            await _drop_mid_upload(receive, send)
        throttle = self.state.faults.take(endpoint, {"throttle_upload"})
        if throttle is not None:
            receive = _throttled_receive(receive, throttle.delay_s / UPLOAD_PIECES)
        request_state: dict[str, object] = scope.setdefault("state", {})
        await self.app(scope, receive, _dropping_send(send, request_state))


UPLOAD_PIECES = 20
"""``throttle_upload``: each body message waits ``delay_s`` / this."""


def _throttled_receive(receive: Receive, pause_s: float) -> Receive:
    async def slow() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            await asyncio.sleep(pause_s)
        return message

    return slow


async def _drop_mid_upload(receive: Receive, send: Send) -> None:
    message = await receive()  # take the first part of the body, then hang up
    del message
    await _send_head(send, 1000)
    raise DroppedConnection("drop_upload")


def _dropping_send(send: Send, request_state: dict[str, object]) -> Send:
    async def wrapped(message: Message) -> None:
        mode = request_state.get("emulator_drop")
        if mode is None:
            await send(message)
        elif message["type"] == "http.response.start":
            if mode == "answer":
                await _send_head(send, 1000)
                raise DroppedConnection("drop_after_create")
            await send(message)
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send(
                {
                    "type": "http.response.body",
                    "body": body[: max(1, len(body) // 2)],
                    "more_body": True,
                }
            )
            raise DroppedConnection("drop_download")
        else:
            await send(message)

    return wrapped
