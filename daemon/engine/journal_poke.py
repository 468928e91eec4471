"""A poke when another connection is done writing the journal: how the daemon hears a
command's request (``jobs retry/cancel/forget``) without asking the journal every second.

A command writes its request row and closes its connection; closing a file opened for
writing is an inotify event (``IN_CLOSE_WRITE``, watchdog's ``FileClosedEvent``) on the
journal's WAL. :class:`JournalPoke` watches the journal's folder for that one event on the
journal's own files and calls ``on_poke`` on the observer's thread; the daemon's own
connection stays open, so its writes raise none. Where there is no inotify (macOS,
Windows) or its limits are reached, :meth:`JournalPoke.start` says so and the caller looks
once a second instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import FileClosedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver

log = structlog.get_logger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, names: frozenset[str], on_poke: Callable[[], object]) -> None:
        self._names = names
        self._on_poke = on_poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if os.path.basename(os.fsdecode(event.src_path)) in self._names:
            self._on_poke()


def inotify_observer() -> BaseObserver | None:
    """watchdog's inotify observer, or None where there is none."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return None
    return InotifyObserver()


class JournalPoke:
    """``on_poke()`` when a connection that wrote the journal at ``path`` closes."""

    def __init__(
        self, path: Path, *, observer: Callable[[], BaseObserver | None] = inotify_observer
    ) -> None:
        self._path = path
        self._factory = observer
        self._observer: BaseObserver | None = None

    def start(self, on_poke: Callable[[], object]) -> bool:
        """Watch the journal's folder; False when that cannot be done (poll instead)."""
        observer = self._factory()
        if observer is None:
            return False
        name = self._path.name
        names = frozenset({name, f"{name}-wal"})
        try:
            observer.schedule(_Handler(names, on_poke), str(self._path.parent),
                              recursive=False, event_filter=[FileClosedEvent])  # fmt: skip
            observer.start()
        except OSError as exc:  # inotify limits: the caller polls
            log.info("journal changes are looked for every second", reason=str(exc))
            return False
        self._observer = observer
        return True

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(2.0)
