"""Tests of daemon.pacing's routes: a sliding window per rate-limit route, each obeying the
lowest limit it has advertised, stops and remaining counts per route.

Time is a fake clock (``ManualClock`` of ``test_pacing``).
"""

from __future__ import annotations

import threading

import pytest
from test_pacing import ManualClock

from daemon.pacing import Pacer

# -- Pacer: a window per route ----------------------------------------------------------------

Seen = list[tuple[str, int]]


@pytest.mark.parametrize(
    ("seen", "kind", "limit"),
    [
        ([], "get", 60),  # nothing heard: the conservative start
        ([], "history", 60),
        ([("history", 120)], "history", 120),  # a route may allow more than the start
        ([("history", 120)], "get", 60),  # ... which says nothing about other routes
        ([("history", 120)], "user", 60),
        ([("get", 60), ("get", 120)], "get", 60),  # the lowest seen stays in force
        ([("history", 120), ("history", 30)], "history", 30),
        ([("history", 120), ("history", 30), ("history", 120)], "history", 30),
        ([("get", 60), ("history", 120), ("user", 120)], "user", 120),
        ([("get", 45)], "get", 45),  # lower than the start: obeyed
    ],
)
def test_each_route_obeys_the_lowest_limit_it_has_sent(seen: Seen, kind: str, limit: int) -> None:
    pacer = Pacer(limit=60, safety_margin=2)
    for at, (route, advertised) in enumerate(seen):
        pacer.observe(advertised, advertised - 1, None, route=route, now=float(at))
    assert pacer.limit_for(kind) == limit
    assert pacer.cap(kind) == limit - 2
    assert dict(pacer.stats().limits) == {r: min(v for n, v in seen if n == r) for r, _ in seen}


def test_routes_have_their_own_windows() -> None:
    pacer = Pacer(limit=60, safety_margin=2, poll_reserve=4)
    assert pacer.try_acquire("history", 0.0, request_id="h") == 0.0
    pacer.observe(120, 119, None, now=0.0, request_id="h")  # ours: no phantom
    assert [pacer.try_acquire("get", 0.0) for _ in range(58)] == [0.0] * 58  # no reserve
    assert pacer.try_acquire("get", 1.0) == pytest.approx(59.0)
    assert pacer.headroom("get", 1.0) == 0
    assert pacer.headroom("create", 1.0) == 58  # other routes are untouched
    assert [pacer.try_acquire("history", 1.0) for _ in range(117)] == [0.0] * 117
    assert pacer.try_acquire("history", 2.0) == pytest.approx(58.0)  # "h" leaves at 60
    assert pacer.try_acquire("create", 2.0) == 0.0


@pytest.mark.parametrize(
    ("answer", "blocked", "free"),
    [
        ({"limit": 60, "remaining": 0, "retry_after_s": 20.0, "route": "get"}, "get", "history"),
        ({"limit": 120, "remaining": 0, "retry_after_s": None, "route": "history"}, "history",
         "get"),
        ({"limit": 60, "remaining": 5, "retry_after_s": 20.0, "route": "create"}, "create", "get"),
    ],
)  # fmt: skip
def test_a_stop_holds_only_the_route_that_answered(
    answer: dict[str, object], blocked: str, free: str
) -> None:
    pacer = Pacer(limit=60)
    pacer.observe(**answer, now=10.0)  # type: ignore[arg-type]
    assert pacer.try_acquire(blocked, 10.0) > 0.0
    assert pacer.headroom(blocked, 10.0) == 0
    assert pacer.try_acquire(free, 10.0) == 0.0
    assert pacer.stats().server_blocks == 1


def test_remaining_is_counted_per_route() -> None:
    pacer = Pacer(limit=60, safety_margin=2)
    pacer.observe(120, 20, None, route="history", now=0.0)  # others used 100 of history's 120
    assert pacer.stats().phantoms == 100
    assert pacer.headroom("history", 0.0) == 18
    assert pacer.headroom("get", 0.0) == 58
    pacer.observe(60, 50, None, route="get", now=0.0)  # 10 on get, none of them ours
    assert pacer.headroom("get", 0.0) == 48 and pacer.stats().phantoms == 110


def test_observe_without_a_route_learns_for_the_request_it_ends() -> None:
    pacer = Pacer(limit=60)
    assert pacer.try_acquire("history", 0.0, request_id="r1") == 0.0
    pacer.observe(120, 119, None, now=0.5, request_id="r1")
    assert (pacer.limit_for("history"), pacer.limit_for("get")) == (120, 60)


def test_an_answer_no_route_can_be_named_for_stops_every_route() -> None:
    pacer = Pacer(limit=60)
    pacer.observe(10, 0, 30.0, now=0.0)  # nothing in flight, no route given
    for kind in ("get", "create", "history"):
        assert pacer.try_acquire(kind, 0.0) == pytest.approx(30.0)
        assert pacer.limit_for(kind) == 60  # its limit is not attributed to any route
    assert pacer.try_acquire("get", 30.0) == 0.0


def test_a_caller_blocked_on_one_route_does_not_hold_up_another() -> None:
    clock = ManualClock()
    pacer = Pacer(limit=1, window_s=10.0, safety_margin=0, poll_reserve=0, clock=clock)
    assert pacer.try_acquire("history", 0.0) == 0.0  # history is full until t=10
    done = threading.Event()

    def blocked() -> None:
        pacer.acquire("history")
        done.set()

    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    clock.wait_for(lambda: clock.sleepers >= 1)
    pacer.acquire("create")  # its own route: granted at once, at t=0
    pacer.observe(None, None, None)
    assert clock.monotonic() == 0.0 and not done.is_set()
    clock.advance(10.0)
    assert done.wait(5)
    thread.join(5)
    assert dict(pacer.stats().granted) == {"history": 2, "create": 1}
