"""`mvsep-watch run`: the process around a :class:`~daemon.service.Daemon`.

The signal contract used by systemd and launchd: SIGTERM/SIGINT stop taking work, leave jobs
running at MVSEP and exit within 10 s (busy workers are left behind: their jobs resume from
the journal); SIGHUP reloads the config (``Daemon.reload``, :mod:`daemon.reload`); a journal
deleted under the daemon stops it with exit code 2. systemd's ``Type=notify`` protocol
(:mod:`daemon.sdnotify`): READY once watching, STATUS kept current, WATCHDOG while the loops
tick, RELOADING around a reload, STOPPING.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import structlog

from daemon.config import Settings
from daemon.errors import JournalGoneError
from daemon.idle import IdleBackoff, Stamp, files_stamp, journal_files
from daemon.journal import ACCOUNT_NOTE
from daemon.leaving import leave_without_busy_workers
from daemon.sdnotify import ExtendingStart, Notifier, summary
from daemon.service import Daemon

log = structlog.get_logger(__name__)

LOOP_S = 1.0
"""The main loop's look (the journal intact, the watchdog, STATUS) while the journal changes;
a signal (SIGTERM, SIGINT, SIGHUP) ends its wait at once."""
IDLE_LOOP_S = 10.0
"""Its longest wait while nothing changes: how soon a journal deleted under an idle daemon
stops it (the engine looks too, before each pass). A watchdog ping due sooner wakes it."""


class _Signals:
    """What the handlers set (flags only: the loop acts) and the one event the loop waits on."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = False
        self.wake = threading.Event()

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal received; stopping", signal=signal.Signals(signum).name)
        self.stop.set()
        self.wake.set()

    def on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True
        self.wake.set()


def run_service(settings: Settings, *, config_path: Path) -> int:
    """`mvsep-watch run`: start, wait for SIGTERM/SIGINT, stop within 10 s."""
    signals = _Signals()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signals.on_stop)
    daemon = Daemon(settings, config_label=str(config_path))
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signals.on_reload)
    notifier = Notifier()  # systemd Type=notify; a no-op elsewhere
    try:
        notifier.status("starting: account, catalogue, journal")
        with ExtendingStart(notifier):
            daemon.start()
        notifier.watch_loops(loop_stamps(daemon))
        notifier.ready()
        main_loop(daemon, notifier, signals, config_path)
    except JournalGoneError as exc:  # a person must look: no restart onto an empty journal
        log.error("journal deleted or replaced; stopping", error=str(exc))
        return exc.exit_code
    finally:
        notifier.stopping()
        daemon.stop(timeout_s=STOP_TIMEOUT_S - 1.0)
    leave_without_busy_workers()
    return 0


def main_loop(daemon: Daemon, notifier: Notifier, signals: _Signals, config_path: Path) -> None:
    """Until a stop: the journal checked intact, a reload carried out, the watchdog pinged,
    STATUS refreshed when the journal changed. Waits on the signals' event, :data:`LOOP_S`
    while the journal changes, backing off to :data:`IDLE_LOOP_S` while it does not, never
    past the next watchdog ping."""
    backoff = IdleBackoff(LOOP_S)
    journal = daemon.journal
    files = journal_files(journal.path if journal else daemon.settings.journal.path)
    seen: Stamp | None = None  # the journal files at the last look
    shown: Stamp | None = None  # ... when STATUS was last made
    wait_s = LOOP_S
    while not signals.stop.is_set():
        signals.wake.wait(wait_s)
        signals.wake.clear()
        if signals.stop.is_set():
            return
        if journal is not None:
            journal.check_intact()
        reloaded, signals.reload = signals.reload, False
        if reloaded:
            notifier.reloading()
            daemon.reload(config_path)
            notifier.ready()
        notifier.watchdog()
        stamp = files_stamp(files)  # before the query: a commit during it is seen next time
        if stamp != shown and notifier.refresh_status(lambda: status_line(daemon)):
            shown = stamp
        wait_s = backoff.next_s(active=reloaded or stamp != seen, cap_s=IDLE_LOOP_S)
        seen = stamp
        due_s = notifier.watchdog_due_in()
        if due_s is not None:  # due, yet a loop has not ticked: look again in a moment
            wait_s = min(wait_s, due_s if due_s > 0 else LOOP_S)


def loop_stamps(daemon: Daemon) -> list[Callable[[], float | None]]:
    """The engine's and the watcher's last ticks: the systemd watchdog pings while both move."""
    engine, watcher = daemon.engine, daemon.watcher
    return [
        lambda: engine.last_tick if engine else None,
        lambda: watcher.last_tick if watcher else None,
    ]


def status_line(daemon: Daemon) -> str:
    """systemd's STATUS= line (cached by the notifier: it is sent when it changes)."""
    if daemon.journal is None or daemon.watcher is None:
        return "starting"
    return summary(
        daemon.journal.counts_by_state(),
        paused=daemon.watcher.paused(),
        account_paused=daemon.journal.note(ACCOUNT_NOTE) is not None,
    )


STOP_TIMEOUT_S = 10.0
"""SIGTERM to exit at most this long (the service units allow 20 s before SIGKILL)."""
