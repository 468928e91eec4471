"""The watchdog side: which events we subscribe to, the handler that only nudges the
checker, and what we make of watchdog's own log lines (overflow, a harmless stop race)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

# Opening a file for the readability check raises IN_OPEN/IN_CLOSE_NOWRITE: not subscribed.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]  # fmt: skip

INOTIFY_FIXES = {
    errno.ENOSPC: ("fs.inotify.max_user_watches", 524288),
    errno.EMFILE: ("fs.inotify.max_user_instances", 512),
}


class Nudger(FileSystemEventHandler):
    """Runs on observer threads: records the event's paths as dirty, nothing else."""

    def __init__(self, nudge: Callable[[str, bool], None]) -> None:
        self._nudge = nudge

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, event.dest_path):
            if raw:
                self._nudge(os.fsdecode(raw), event.is_directory)


class OverflowListener(logging.Handler):
    """watchdog only *logs* an inotify queue overflow; turn that log line into a rescan."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow()


class _StopRace(logging.Filter):
    """watchdog (7.x) logs an *error* when an inotify emitter's last read returns after the
    emitter was told to stop, which happens at almost every ``stop()`` and on unscheduling a
    paused inbox. Nothing is lost and nothing is wrong, so the line is dropped rather than
    alarm whoever reads the daemon's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


INOTIFY_LOGGER = "watchdog.observers.inotify"
logging.getLogger(INOTIFY_LOGGER).addFilter(_StopRace())


def log_inotify_fix(inbox_log: Any, exc: OSError) -> None:
    key, value = INOTIFY_FIXES[exc.errno or errno.ENOSPC]
    inbox_log.error(
        "inotify limit reached; polling this inbox instead",
        error=str(exc),
        fix=f"sudo sysctl {key}={value}",
        persist=f"echo {key}={value} | sudo tee /etc/sysctl.d/90-mvsep-watch.conf"
        " && sudo sysctl --system",
    )
