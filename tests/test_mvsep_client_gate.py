"""The MVSEP client's Retry-After handling and its request gate (the pacer): each attempt
passes the gate, an interrupt closes it, Retry-After is waited within the retry budget.

The same scripted transport as ``test_mvsep_client`` (MVSEP cannot be reached from here).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from test_mvsep_client import WAITING, Script, audio, fail, no_backoff, reply

from daemon.errors import ApiRateLimited, ApiRejected, ApiServerError, OutcomeUnknown, Stopping
from daemon.mvsep.failures import make_retry_hook, parse_retry_after, retry_wait

__all__ = ["audio", "no_backoff"]  # fixtures used here


# ---------------------------------------------------------------------------------------------
# Retry-After, gate, rate limit


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_retry_hook_uses_retry_after_within_budget() -> None:
    assert retry_wait(ApiRateLimited("x", retry_after_s=3.5)) == 3.5
    assert retry_wait(ApiRateLimited("x")) is True
    assert retry_wait(ApiServerError("x")) is True
    assert retry_wait(ApiRejected("x")) is False
    assert retry_wait(OutcomeUnknown("x")) is False
    hook = make_retry_hook(10)
    assert hook(ApiRateLimited("x", retry_after_s=9)) == 9
    assert hook(ApiRateLimited("x", retry_after_s=11)) is False


def test_retry_after_is_really_waited() -> None:
    script = Script(reply(429, {"message": "slow down"}, **{"Retry-After": "0.3"}), WAITING)
    client = script.client()
    with stamina.set_testing(False):
        began = time.monotonic()
        client.get("H1")
        elapsed = time.monotonic() - began
    assert len(script.requests) == 2 and elapsed >= 0.3


def test_retry_after_beyond_the_budget_is_raised_at_once() -> None:
    script = Script(reply(429, {"message": "slow down"}, **{"Retry-After": "120"}), WAITING)
    with stamina.set_testing(False), pytest.raises(ApiRateLimited) as caught:
        script.client(retry_timeout_s=30).get("H1")
    assert caught.value.retry_after_s == 120.0 and len(script.requests) == 1


class RecordingGate:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def acquire(self, kind: str) -> None:
        self.calls.append(("acquire", kind))

    def observe(
        self,
        limit: int | None,
        remaining: int | None,
        retry_after_s: float | None,
        *,
        route: str | None = None,
    ) -> None:
        self.calls.append(("observe", limit, remaining, retry_after_s, route))

    def close(self) -> None:
        self.calls.append(("close",))


def test_gate_is_called_for_every_attempt() -> None:
    limits = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "7"}
    script = Script(
        reply(429, {"message": "slow"}, **{"Retry-After": "0", **limits}),
        fail(httpx.ConnectError),
        reply(200, {"success": True, "status": "waiting", "data": {}}, **limits),
    )
    gate = RecordingGate()
    script.client(gate=gate).get("H1")
    assert gate.calls == [
        ("acquire", "get"),
        ("observe", 60, 7, 0.0, "get"),
        ("acquire", "get"),  # the connection failed: no answer to observe
        ("acquire", "get"),
        ("observe", 60, 7, None, "get"),
    ]


def test_interrupt_closes_the_gate_and_sends_nothing_more() -> None:
    script = Script(reply(200, {"success": True, "status": "waiting", "data": {}}))
    gate = RecordingGate()
    client = script.client(gate=gate)
    client.get("H1")
    client.interrupt()
    with pytest.raises(Stopping):
        client.get("H1")
    with pytest.raises(Stopping):
        client.create(sep_type=1, output_format=0, url="http://h/x")
    assert len(script.requests) == 1  # only the call before the interrupt was sent
    assert gate.calls[-1] == ("close",)


def test_gate_kinds_and_rate_limit(tmp_path: Path) -> None:
    ok = reply(
        200,
        {"success": True, "data": {"hash": "H", "message": "m"}},
        **{"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "58"},
    )
    script = Script(ok)
    gate = RecordingGate()
    client = script.client(gate=gate)
    assert (client.rate_limit.limit, client.rate_limit.remaining) == (None, None)
    client.create(sep_type=1, output_format=0, url="http://h/x")
    client.cancel("H")
    assert [c[1] for c in gate.calls if c[0] == "acquire"] == ["create", "cancel"]
    assert (client.rate_limit.limit, client.rate_limit.remaining) == (60, 58)
    client.download("https://files.test/x.mp3", tmp_path / "x.mp3")
    assert len([c for c in gate.calls if c[0] == "acquire"]) == 2  # downloads skip the gate
