"""The client and the real Pacer together: each route's X-RateLimit-* reaches its own window.

The per-route limits of the real service (60 on ``get``/``algorithms``, 120 on history and
account routes) are served here by ``httpx.MockTransport``: the emulator's ``--rate-limit
ROUTE=N`` is being written at the same time. The last test uses the real emulator over
loopback, which today sends one limit on every route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from daemon.errors import ApiRateLimited
from daemon.mvsep import MvsepClient
from daemon.pacing import Pacer

TOKEN = "tok-SECRET-rates"
LIMITS = {
    "/api/separation/get": 60,
    "/api/app/algorithms": 60,
    "/api/app/separation_history": 120,
    "/api/app/user": 120,
}
BODIES: dict[str, Any] = {
    "/api/separation/get": {"success": True, "status": "waiting", "data": {}},
    "/api/app/algorithms": [],
    "/api/app/separation_history": {"success": True, "data": []},
    "/api/app/user": {"success": True, "data": {"name": "n", "premium_minutes": "5"}},
}


class PerRouteServer:
    """Answers like MVSEP: a fixed window per route, each with its own limit and count."""

    def __init__(self, used_by_others: dict[str, int] | None = None) -> None:
        self.hits = dict(used_by_others or {})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[path] = self.hits.get(path, 0) + 1
        limit = LIMITS[path]
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - self.hits[path])),
        }
        return httpx.Response(200, json=BODIES[path], headers=headers)


def client_with(pacer: Pacer, server: Callable[[httpx.Request], httpx.Response]) -> MvsepClient:
    http = httpx.Client(transport=httpx.MockTransport(server))
    return MvsepClient(base_url="https://mvsep.test", api_token=TOKEN, http=http, gate=pacer)


def test_each_route_learns_its_own_limit_through_the_client() -> None:
    pacer = Pacer(limit=60, safety_margin=2)
    client = client_with(pacer, PerRouteServer())
    client.separation_history()
    client.user()
    client.get("H1")
    client.algorithms()
    assert dict(pacer.stats().limits) == {"history": 120, "user": 120, "get": 60, "algorithms": 60}
    assert (pacer.cap("history"), pacer.cap("get"), pacer.cap("create")) == (118, 58, 58)
    assert pacer.stats().in_flight == 0 and pacer.stats().phantoms == 0


def test_remaining_used_elsewhere_slows_only_that_route() -> None:
    pacer = Pacer(limit=60, safety_margin=2)
    server = PerRouteServer(used_by_others={"/api/app/separation_history": 100})
    client = client_with(pacer, server)
    client.separation_history()  # Remaining 19 of 120: 100 hits were not ours
    client.get("H1")
    assert pacer.stats().phantoms == 100
    assert pacer.headroom("history", 0.0) == 118 - 101
    assert pacer.headroom("get", 0.0) == 58 - 1


def test_a_429_on_one_route_leaves_the_others_free() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/separation/get":
            return httpx.Response(
                429,
                json={"message": "Too Many Attempts."},
                headers={"Retry-After": "300", "X-RateLimit-Limit": "60"},
            )
        return PerRouteServer()(request)

    pacer = Pacer(limit=60)
    client = client_with(pacer, server)
    with pytest.raises(ApiRateLimited):
        client.get("H1")  # Retry-After beyond the retry budget: raised at once
    assert pacer.headroom("get", 0.0) == 0
    assert pacer.headroom("history", 0.0) > 0
    client.separation_history()  # another route: sent without waiting out the 300 s


def test_against_the_emulator_every_answer_reaches_its_route(
    make_emulator: Callable[..., Any],
) -> None:
    pytest.importorskip("daemon.emulator.server", reason="the emulator is not available")
    emu = make_emulator(premium=True, rate_limit=True, rate_limit_per_min=50)
    pacer = Pacer(limit=60, safety_margin=2)
    with MvsepClient(base_url=emu.base_url, api_token=TOKEN, gate=pacer) as client:
        client.user()
        client.algorithms()
        client.separation_history()
    limits = dict(pacer.stats().limits)
    assert limits == {"user": 50, "algorithms": 50, "history": 50}
    assert pacer.limit_for("get") == 60  # not heard from yet: the conservative start
    assert pacer.stats().in_flight == 0
