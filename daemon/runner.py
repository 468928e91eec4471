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
from daemon.journal import ACCOUNT_NOTE
from daemon.leaving import leave_without_busy_workers
from daemon.sdnotify import ExtendingStart, Notifier, summary
from daemon.service import Daemon

log = structlog.get_logger(__name__)

LOOP_S = 1.0
"""How often the main loop checks the journal is intact, a reload is asked for, and the
watchdog; a SIGTERM ends the wait at once."""


def run_service(settings: Settings, *, config_path: Path) -> int:
    """`mvsep-watch run`: start, wait for SIGTERM/SIGINT, stop within 10 s."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal received; stopping", signal=signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    daemon = Daemon(settings, config_label=str(config_path))
    reload = threading.Event()
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, f: reload.set())
    notifier = Notifier()  # systemd Type=notify; a no-op elsewhere
    try:
        notifier.status("starting: account, catalogue, journal")
        with ExtendingStart(notifier):
            daemon.start()
        notifier.watch_loops(loop_stamps(daemon))
        notifier.ready()
        while not stop.wait(LOOP_S):
            if daemon.journal is not None:
                daemon.journal.check_intact()
            if reload.is_set():
                reload.clear()
                notifier.reloading()
                daemon.reload(config_path)
                notifier.ready()
            notifier.watchdog()
            notifier.refresh_status(lambda: status_line(daemon))
    except JournalGoneError as exc:  # a person must look: no restart onto an empty journal
        log.error("journal deleted or replaced; stopping", error=str(exc))
        return exc.exit_code
    finally:
        notifier.stopping()
        daemon.stop(timeout_s=STOP_TIMEOUT_S - 1.0)
    leave_without_busy_workers()
    return 0


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
