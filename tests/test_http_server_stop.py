"""The status server's loop waits long when idle, and a stop still ends it at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest

from daemon.http import StatusServer
from daemon.http.server import IDLE_POLL_S


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_an_idle_server_stops_long_before_its_loop_would_look(host: str) -> None:
    assert IDLE_POLL_S >= 10.0  # idle, the loop wakes rarely (it woke 5 times a second)
    server = StatusServer(hello, host, 0)
    server.start()
    assert httpx.get(server.url + "/").text == "hello"  # serving, then idle in its wait
    began = time.monotonic()
    server.stop(timeout_s=5.0)
    took_s = time.monotonic() - began
    assert took_s < 2.0, f"stop took {took_s:.2f} s"
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/", timeout=1.0)
