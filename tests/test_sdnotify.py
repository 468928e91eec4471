"""sd_notify pieces on a real AF_UNIX datagram socket: the datagram, abstract sockets,
WATCHDOG_PID, and the watchdog that pings only while every loop ticks (clock injected)."""

from __future__ import annotations

import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.clock import ManualClock
from daemon.sdnotify import ExtendingStart, Notifier, notify, summary, watchdog_interval_s


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its NOTIFY_SOCKET spelling (a short path: sun_path is
    108 bytes, pytest's tmp_path can be longer)."""
    with tempfile.TemporaryDirectory(prefix="sdn") as folder:
        path = str(Path(folder) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(5.0)
            yield sock, path


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5.0)
    return False


def test_a_datagram_reaches_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": path})
    assert received(sock) == "READY=1\nSTATUS=up"


def test_an_abstract_socket_is_spelt_with_an_at() -> None:
    name = f"mvsep-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5.0)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert received(sock) == "STOPPING=1"


def test_without_notify_socket_nothing_is_sent() -> None:
    assert not notify("READY=1", {})
    notifier = Notifier(env={})
    assert not notifier.enabled
    notifier.ready()  # a no-op, no error
    assert notifier.watchdog_s is None


def test_a_dead_socket_is_not_an_error(tmp_path: Path) -> None:
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody")})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "120000000"}, 60.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "4242"}, 60.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval_s(env, 4242) == expected


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    Notifier(env={"NOTIFY_SOCKET": path}).reloading()
    lines = dict(line.split("=", 1) for line in received(sock).splitlines())
    assert lines["RELOADING"] == "1"
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 <= now_usec - int(lines["MONOTONIC_USEC"]) < 5_000_000


def test_status_is_one_line_and_sent_only_when_it_changes(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    notifier.status("jobs: 1 queued\n2 filed")
    assert received(sock) == "STATUS=jobs: 1 queued 2 filed"
    notifier.status("jobs: 1 queued 2 filed")
    assert nothing_waiting(sock)


def test_watchdog_pings_only_while_every_loop_ticks(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    clock = ManualClock(100.0)
    ticks: dict[str, float | None] = {"engine": None, "watcher": None}
    notifier = Notifier(
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"},  # WatchdogSec=10
        loops=[lambda: ticks["engine"], lambda: ticks["watcher"]],
        clock=clock.monotonic,
    )
    assert notifier.watchdog_s == 5.0
    ticks.update(engine=101.0, watcher=101.0)
    clock.advance(4.9)
    assert not notifier.watchdog()  # not half an interval yet
    clock.advance(0.2)
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    ticks["engine"] = 106.0  # the watcher is stuck since 101
    clock.advance(6.0)
    assert not notifier.watchdog()
    assert nothing_waiting(sock)
    ticks["watcher"] = 111.5  # it moved again
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"


def test_a_loop_that_never_ticked_gets_no_ping(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    clock = ManualClock(0.0)
    notifier = Notifier(
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"},
        loops=[lambda: None],
        clock=clock.monotonic,
    )
    clock.advance(5.0)
    assert not notifier.watchdog()


def test_a_long_start_extends_the_timeout_until_it_ends(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    with ExtendingStart(notifier, step_s=0.05):
        assert received(sock) == "EXTEND_TIMEOUT_USEC=150000"
        assert received(sock) == "EXTEND_TIMEOUT_USEC=150000"  # and again, while it lasts


def test_summary_names_jobs_paused_inboxes_and_the_account() -> None:
    counts = {"queued": 2, "processing": 0, "filed": 5}
    assert summary(counts, paused=[], account_paused=False) == "jobs: 2 queued, 5 filed"
    line = summary({}, paused=["nas"], account_paused=True)
    assert line.startswith("jobs: none; paused inboxes: nas; submits paused")
