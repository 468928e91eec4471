"""Tests of daemon.pacing: the shared pacer, its routes and what the server says.

Time is a fake clock everywhere except one thread test on real time with a short window,
bounded by deadlines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.errors import Stopping
from daemon.pacing import Pacer

# -- helpers ----------------------------------------------------------------------------------


class FakeClock:
    """``sleep`` advances ``monotonic`` at once: no real waiting."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class ManualClock:
    """A fake clock for threads: ``sleep`` blocks until the test ``advance``s past its end."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers = 0
        self._cv = threading.Condition()

    def monotonic(self) -> float:
        with self._cv:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._cv:
            target = self.now + seconds
            self.sleepers += 1
            self._cv.notify_all()
            deadline = time.monotonic() + 10
            while self.now < target and time.monotonic() < deadline:
                self._cv.wait(0.5)
            self.sleepers -= 1

    def advance(self, seconds: float) -> None:
        with self._cv:
            self.now += seconds
            self._cv.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting for the threads"
            time.sleep(0.002)


ALL_KINDS = ["get", "get_remote", "create", "cancel", "history", "user"]
SHARED = {kind: "api" for kind in ALL_KINDS}
"""Every kind counted in one window: the reserve and priority rules of a shared route."""


def small_pacer(**kwargs: object) -> Pacer:
    """One shared route; limit 10, margin 2, reserve 2: non-polls may hold 8 places, polls 6."""
    options: dict[str, object] = {
        "limit": 10,
        "window_s": 60.0,
        "safety_margin": 2,
        "poll_reserve": 2,
        "routes": SHARED,
    }
    options.update(kwargs)
    return Pacer(**options)  # type: ignore[arg-type]


def max_in_window(times: list[float], window_s: float) -> int:
    """Most of ``times`` inside any half-open window ``[t, t + window_s)``."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window_s + 1e-9:  # float rounding of t = e + window_s
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def max_in_fixed_windows(times: list[float], window_s: float, phase: float) -> int:
    counts: dict[int, int] = {}
    for t in times:
        key = int((t - phase) // window_s)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


# -- Pacer: the window ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cap"),
    [("get", 6), ("get_remote", 6), ("create", 8), ("cancel", 8), ("history", 8), ("user", 8)],
)
def test_caps_per_kind(kind: str, cap: int) -> None:
    pacer = small_pacer()
    assert pacer.cap(kind) == cap
    assert [pacer.try_acquire(kind, 0.0) for _ in range(cap)] == [0.0] * cap
    assert pacer.try_acquire(kind, 1.0) == pytest.approx(59.0)
    assert pacer.try_acquire(kind, 60.0) == 0.0


@pytest.mark.parametrize(
    ("grants", "now", "expected_wait"),
    [
        ([0, 10, 20, 30, 40, 50, 55, 58], 58.5, 1.5),  # the oldest leaves at 60
        ([0, 10, 20, 30, 40, 50, 55, 58], 60.0, 0.0),
        ([5, 5, 5, 5, 5, 5, 5, 5], 30.0, 35.0),
        ([0, 1, 2, 3, 4, 5, 6], 7.0, 0.0),  # 7 held < 8
    ],
)
def test_wait_until_a_place_frees(grants: list[float], now: float, expected_wait: float) -> None:
    pacer = small_pacer()
    for t in grants:
        assert pacer.try_acquire("create", t) == 0.0
    assert pacer.try_acquire("create", now) == pytest.approx(expected_wait)


def test_polls_keep_the_reserve_free_for_creates() -> None:
    pacer = small_pacer()
    for _ in range(6):
        assert pacer.try_acquire("get", 0.0) == 0.0
    assert pacer.try_acquire("get", 0.0) == pytest.approx(60.0)
    assert pacer.headroom("get", 0.0) == 0
    assert pacer.headroom("create", 0.0) == 2
    assert pacer.try_acquire("create", 0.0) == 0.0
    assert pacer.try_acquire("cancel", 0.0) == 0.0
    assert pacer.try_acquire("create", 0.0) == pytest.approx(60.0)


def test_budget_per_s_is_headroom_over_the_window() -> None:
    pacer = small_pacer()
    assert pacer.budget_per_s(0.0) == pytest.approx(6 / 60)
    pacer.try_acquire("get", 0.0)
    assert pacer.budget_per_s(0.0, "get") == pytest.approx(5 / 60)
    assert pacer.budget_per_s(0.0, "create") == pytest.approx(7 / 60)


def test_stale_now_counts_as_the_latest() -> None:
    pacer = small_pacer()
    for _ in range(8):
        pacer.try_acquire("create", 100.0)
    assert pacer.try_acquire("create", 50.0) == pytest.approx(60.0)


KINDS = st.sampled_from(ALL_KINDS)


def by_route(pacer: Pacer, grants: list[tuple[str, float]]) -> dict[str, list[float]]:
    routes: dict[str, list[float]] = {}
    for kind, at in grants:
        routes.setdefault(pacer.route_of(kind), []).append(at)
    return routes


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0, 20), KINDS), max_size=60),
    limit=st.integers(1, 12),
    margin=st.integers(0, 3),
    reserve=st.integers(0, 4),
    phase=st.floats(0, 60),
    shared=st.booleans(),
)
def test_no_window_ever_exceeds_the_limit(
    steps: list[tuple[float, str]],
    limit: int,
    margin: int,
    reserve: int,
    phase: float,
    shared: bool,
) -> None:
    pacer = Pacer(
        limit=limit,
        window_s=60.0,
        safety_margin=margin,
        poll_reserve=reserve,
        routes=SHARED if shared else None,
    )
    granted: list[tuple[str, float]] = []
    now = 0.0
    for gap, kind in steps:
        now += gap
        if pacer.try_acquire(kind, now) == 0.0:
            granted.append((kind, now))
    cap = max(1, limit - margin)
    for times in by_route(pacer, granted).values():
        assert max_in_window(times, 60.0) <= min(cap, limit)
        assert max_in_fixed_windows(times, 60.0, phase) <= cap


@settings(max_examples=40, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.floats(0, 15), KINDS, st.floats(0, 90), st.floats(0, 1)), max_size=40
    ),
    limit=st.integers(1, 10),
    shared=st.booleans(),
)
def test_latency_never_breaks_the_server_window(
    requests: list[tuple[float, str, float, float]], limit: int, shared: bool
) -> None:
    """Each request is counted by its route's window at any time between grant and answer."""
    routes = SHARED if shared else None
    pacer = Pacer(limit=limit, window_s=60.0, safety_margin=0, poll_reserve=0, routes=routes)
    answers: list[tuple[float, int]] = []  # (answer time, request id), unsorted
    counted: list[tuple[str, float]] = []
    now = 0.0
    for rid, (gap, kind, latency, where) in enumerate(requests):
        now += gap
        while True:
            for at, done in sorted(a for a in answers if a[0] <= now):
                pacer.observe(None, None, None, now=at, request_id=done)
                answers.remove((at, done))
            wait = pacer.try_acquire(kind, now, request_id=rid)
            if wait == 0.0:
                break
            due = [a[0] for a in answers]
            now = min([now + wait, *due]) if due else now + wait
        answers.append((now + latency, rid))
        counted.append((kind, now + where * latency))
    for times in by_route(pacer, counted).values():
        assert max_in_window(times, 60.0) <= limit


# -- Pacer: what the server says --------------------------------------------------------------


def test_a_shared_route_obeys_its_lowest_advertised_limit() -> None:
    pacer = Pacer(limit=60, safety_margin=2, poll_reserve=4, routes=SHARED)
    assert (pacer.cap("create"), pacer.cap("get")) == (58, 54)
    pacer.observe(10, 9, None, route="get", now=0.0)
    assert pacer.limit_for("create") == 10
    assert (pacer.cap("create"), pacer.cap("get")) == (8, 4)
    pacer.observe(120, None, None, route="create", now=0.0)
    assert pacer.limit_for("get") == 10  # the lowest seen stays in force


def test_lowered_limit_applies_to_requests_already_made() -> None:
    pacer = Pacer(limit=60, safety_margin=0, poll_reserve=0)
    for _ in range(20):
        assert pacer.try_acquire("get", 0.0) == 0.0
    pacer.observe(10, 40, None, route="get", now=1.0)
    assert pacer.try_acquire("get", 1.0) == pytest.approx(59.0)


@pytest.mark.parametrize(
    ("remaining", "retry_after_s", "blocked_until"),
    [(None, 30.0, 35.0), (0, 12.5, 17.5), (0, None, 65.0), (50, 3.0, 8.0)],
)
def test_server_stop_blocks_every_kind(
    remaining: int | None, retry_after_s: float | None, blocked_until: float
) -> None:
    pacer = Pacer(limit=60)
    pacer.observe(60, remaining, retry_after_s, now=5.0)
    for kind in ("get", "create", "user"):
        assert pacer.try_acquire(kind, 5.0) == pytest.approx(blocked_until - 5.0)
        assert pacer.headroom(kind, 5.0) == 0
    assert pacer.try_acquire("create", blocked_until) == 0.0
    assert pacer.stats().server_blocks == 1


def test_remaining_lower_than_ours_adds_phantoms() -> None:
    pacer = Pacer(limit=60, safety_margin=2, poll_reserve=4, routes=SHARED)
    pacer.try_acquire("get", 0.0, request_id=1)
    pacer.observe(60, 10, None, now=1.0, request_id=1)  # the server counted 50, we made 1
    assert pacer.stats().phantoms == 49
    assert pacer.headroom("create", 1.0) == 8
    assert pacer.headroom("get", 1.0) == 4
    pacer.observe(60, 40, None, route="get", now=2.0)  # fewer than ours: nothing to add
    assert pacer.stats().phantoms == 49
    assert pacer.headroom("create", 61.0) == 58


def test_request_in_flight_holds_its_place_until_answered() -> None:
    pacer = Pacer(
        limit=2,
        window_s=10.0,
        safety_margin=0,
        poll_reserve=0,
        max_in_flight_s=1000.0,
        routes=SHARED,
    )
    assert pacer.try_acquire("create", 0.0, request_id="upload") == 0.0
    assert pacer.try_acquire("get", 0.0) == 0.0
    assert pacer.stats().in_flight == 1
    assert pacer.try_acquire("get", 500.0) == 0.0  # the get at 0 left at 10
    assert pacer.try_acquire("get", 500.0) == pytest.approx(10.0)  # the upload still holds
    pacer.observe(2, None, None, now=505.0, request_id="upload")
    assert pacer.stats().in_flight == 0
    assert pacer.try_acquire("get", 510.0) == 0.0
    assert pacer.try_acquire("get", 512.0) == pytest.approx(3.0)  # the upload leaves at 515


def test_forgotten_request_is_released_after_max_in_flight() -> None:
    pacer = Pacer(limit=1, window_s=10.0, safety_margin=0, poll_reserve=0, max_in_flight_s=100.0)
    assert pacer.try_acquire("create", 0.0, request_id=1) == 0.0
    assert pacer.try_acquire("create", 109.0) == pytest.approx(1.0)
    assert pacer.try_acquire("create", 110.0) == 0.0


def test_next_acquire_of_a_thread_ends_its_previous_request() -> None:
    clock = FakeClock()
    pacer = Pacer(limit=1, window_s=10.0, safety_margin=0, poll_reserve=0, clock=clock)
    pacer.acquire("user")  # never observed (say the connection dropped)
    clock.now = 3.0
    pacer.acquire("user")  # the first one counts as answered at 3: it holds until 13
    assert clock.now == pytest.approx(13.0)
    assert pacer.stats().in_flight == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"window_s": 0},
        {"guard_s": -1},
        {"safety_margin": -1},
        {"poll_reserve": -1},
        {"max_in_flight_s": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Pacer(**kwargs)  # type: ignore[arg-type]


# -- Pacer: blocking acquire ------------------------------------------------------------------


def test_acquire_sleeps_on_the_injected_clock() -> None:
    clock = FakeClock(100.0)
    grants: list[tuple[str, float]] = []
    pacer = Pacer(
        limit=3,
        window_s=60.0,
        safety_margin=0,
        poll_reserve=1,
        routes=SHARED,
        clock=clock,
        on_grant=lambda kind, now: grants.append((kind, now)),
    )
    for _ in range(2):
        pacer.acquire("get")
        pacer.observe(3, None, None)
    clock.now = 110.0
    pacer.acquire("get")  # polls may hold 2: waits for the grant at 100 to leave
    assert clock.now == pytest.approx(160.0)
    pacer.observe(3, None, None)
    stats = pacer.stats()
    assert dict(stats.granted) == {"get": 3}
    assert stats.waited == 1
    assert stats.total_wait_s == pytest.approx(50.0)
    assert [now for _, now in grants] == [100.0, 100.0, 160.0]


def test_acquire_honours_retry_after() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.observe(60, 0, 42.0)
    pacer.acquire("create")
    assert clock.now == pytest.approx(42.0)


def test_priority_then_fifo_among_blocked_threads() -> None:
    clock = ManualClock()
    order: list[tuple[str, str, float]] = []
    current: dict[int, str] = {threading.get_ident(): "fill"}
    pacer = Pacer(
        limit=1,
        window_s=10.0,
        safety_margin=0,
        poll_reserve=0,
        routes=SHARED,
        clock=clock,
        on_grant=lambda kind, now: order.append((current[threading.get_ident()], kind, now)),
    )
    assert pacer.try_acquire("create", 0.0) == 0.0  # the window is full until t=10

    def call(name: str, kind: str) -> None:
        current[threading.get_ident()] = name
        pacer.acquire(kind)
        pacer.observe(None, None, None)

    threads: list[threading.Thread] = []
    for name, kind, queued in [("poll-1", "get", 1), ("poll-2", "get", 2), ("create", "create", 3)]:
        thread = threading.Thread(target=call, args=(name, kind), daemon=True)
        thread.start()
        threads.append(thread)
        clock.wait_for(lambda n=queued: pacer.stats().queued == n)  # type: ignore[misc]
    for granted in range(2, 5):
        clock.wait_for(lambda: clock.sleepers >= 1)
        clock.advance(10.0)
        clock.wait_for(lambda n=granted: len(order) >= n)  # type: ignore[misc]
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert order == [
        ("fill", "create", 0.0),
        ("create", "create", 10.0),
        ("poll-1", "get", 20.0),
        ("poll-2", "get", 30.0),
    ]


def test_threads_on_real_time_stay_within_the_window() -> None:
    window_s = 0.2
    grants: list[tuple[str, float]] = []
    pacer = Pacer(
        limit=4,
        window_s=window_s,
        safety_margin=0,
        poll_reserve=1,
        routes=SHARED,
        on_grant=lambda kind, now: grants.append((kind, now)),
    )
    errors: list[BaseException] = []

    def worker(kinds: list[str]) -> None:
        try:
            for kind in kinds:
                pacer.acquire(kind)
                pacer.observe(4, None, None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    plans = [
        ["get"] * 4,
        ["get", "create"] * 2,
        ["create", "user", "get", "get"],
        ["get"] * 4,
        ["history", "get", "get", "cancel"],
    ]
    threads = [threading.Thread(target=worker, args=(plan,), daemon=True) for plan in plans]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.1, started + 60 - time.monotonic()))  # a loaded CI box
        assert not thread.is_alive(), "a thread is stuck in acquire"
    assert not errors
    assert len(grants) == 20
    assert max_in_window([now for _, now in grants], window_s) <= 4
    assert max_in_window([now for kind, now in grants if kind == "get"], window_s) <= 3
    assert time.monotonic() - started >= (20 / 4 - 1) * window_s * 0.9
    assert pacer.stats().queued == 0


def test_close_ends_a_wait_for_the_window_at_once() -> None:
    """Stopping must not wait out the rate limit: a blocked ``acquire`` raises ``Stopping``."""
    pacer = Pacer(limit=1, window_s=3600.0, safety_margin=0, poll_reserve=0)
    pacer.acquire("get")
    pacer.observe(1, None, None)
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def blocked() -> None:
        waiting.set()
        try:
            pacer.acquire("get")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    assert waiting.wait(5)
    thread.join(0.2)
    assert thread.is_alive()  # still waiting for the hour-long window
    pacer.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Stopping)
    with pytest.raises(Stopping):
        pacer.acquire("create")  # and nothing is granted after the close
