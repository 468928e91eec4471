"""systemd's readiness protocol (``sd_notify``), written out: one datagram per message.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: a path, or an abstract
socket spelt with a leading ``@``. Each message is ``KEY=VALUE`` lines in one datagram on an
``AF_UNIX``/``SOCK_DGRAM`` socket. Without ``$NOTIFY_SOCKET`` (a terminal, launchd, tests)
every call is a no-op. A send that fails is logged at DEBUG and forgotten: readiness
messages must never stop the daemon.

The watchdog: with ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``,
which must be this process, or the watchdog is someone else's). :class:`Notifier` sends
``WATCHDOG=1`` every half interval, and only while every loop it was given (the engine's
scheduler and the watcher's checker) has ticked since the previous ping: a wedged loop stops
the pings and systemd restarts the service.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

log = structlog.get_logger(__name__)

Stamp = Callable[[], float | None]
"""A loop's last tick, ``time.monotonic()`` seconds (``None``: it has not ticked yet)."""


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram; ``False`` without ``$NOTIFY_SOCKET`` or on failure."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":  # the abstract namespace: a leading NUL byte
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify failed", error=str(exc))
        return False
    return True


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, what ``RELOADING=1`` carries."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or ``None`` when no watchdog is
    asked of this process (unset, not a number, or ``$WATCHDOG_PID`` names another one)."""
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner and owner != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier:
    """What the daemon tells systemd: readiness, a status line, watchdog pings, stopping."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        loops: Sequence[Stamp] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self.enabled = bool(self._env.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_interval_s(self._env, os.getpid()) if self.enabled else None
        self._loops = list(loops)
        self._clock = clock
        self._last_ping = clock()
        self._status = ""
        self._status_at = float("-inf")

    def send(self, *lines: str) -> bool:
        return self.enabled and notify("\n".join(lines), self._env)

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        """``STATUS=text`` (one line), sent only when it changed."""
        line = " ".join(text.split())
        if line != self._status and self.send(f"STATUS={line}"):
            self._status = line

    def refresh_status(self, text: Callable[[], str], every_s: float = 2.0) -> bool:
        """:meth:`status` with ``text()`` at most every ``every_s`` (only when enabled);
        whether ``text()`` was asked (False: too soon, or nothing to tell)."""
        now = self._clock()
        if not self.enabled or now - self._status_at < every_s:
            return False
        self._status_at = now
        self.status(text())
        return True

    def extend_timeout(self, usec: int) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def watch_loops(self, loops: Sequence[Stamp]) -> None:
        self._loops = list(loops)

    def watchdog_due_in(self) -> float | None:
        """Seconds until :meth:`watchdog` may ping (<= 0: now), None without a watchdog:
        the main loop sleeps no longer than that."""
        if self.watchdog_s is None:
            return None
        return self._last_ping + self.watchdog_s - self._clock()

    def watchdog(self) -> bool:
        """Ping if half an interval has passed and every loop ticked since the last ping."""
        if self.watchdog_s is None:
            return False
        now = self._clock()
        if now - self._last_ping < self.watchdog_s:
            return False
        stamps = [loop() for loop in self._loops]
        if any(s is None or s <= self._last_ping for s in stamps):
            return False  # a loop is stuck: no ping, and systemd steps in at WatchdogSec
        self._last_ping = now
        return self.send("WATCHDOG=1")


class ExtendingStart:
    """While a (long) start runs, ask systemd every ``step_s`` for ``step_s * 3`` more, up to
    ``max_s`` in all: a slow MVSEP at boot is not a failed start, a hung one still is."""

    def __init__(self, notifier: Notifier, *, step_s: float = 10.0, max_s: float = 300.0) -> None:
        self._notifier = notifier
        self._step_s = step_s
        self._max_s = max_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ExtendingStart:
        if self._notifier.enabled:
            self._thread = threading.Thread(target=self._run, name="sd-extend", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_s
        while time.monotonic() < deadline:
            self._notifier.extend_timeout(int(self._step_s * 3 * 1e6))
            if self._done.wait(self._step_s):
                return


def summary(counts: Mapping[str, int], *, paused: Sequence[str], account_paused: bool) -> str:
    """The one-line ``STATUS=``: jobs by state (those there are), paused inboxes, the account."""
    jobs = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "none"
    parts = [f"jobs: {jobs}"]
    if paused:
        parts.append("paused inboxes: " + ", ".join(paused))
    if account_paused:
        parts.append("submits paused (account; see mvsep-watch status)")
    return "; ".join(parts)
