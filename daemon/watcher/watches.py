"""The observer watches of the inboxes: one native watchdog observer shared by the natively
watched inboxes, one ``PollingObserver`` per polled inbox.

:class:`Watches` places an inbox's watch (choosing native or polling with
:func:`~daemon.watcher.health.decide_mode`, falling back to polling when the inotify limits
are hit), takes it away, and stops the observers. Called by the checker thread (and by
``InboxWatcher.start``/``stop``); observer threads only call ``nudge``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.observers.api import BaseObserver

from daemon.watcher.health import decide_mode
from daemon.watcher.inbox import InboxState
from daemon.watcher.observers import EVENT_TYPES, INOTIFY_FIXES, Nudger, log_inotify_fix

Nudge = Callable[[InboxState, str, bool], None]


class Watches:
    """Places and removes the observer watch of each inbox."""

    def __init__(
        self,
        *,
        observer_factory: Callable[[], BaseObserver],
        polling_factory: Callable[[float], BaseObserver],
        mountinfo: Path,
        nudge: Nudge,
    ) -> None:
        self._observer_factory = observer_factory
        self._polling_factory = polling_factory
        self._mountinfo = mountinfo
        self._nudge = nudge
        self.native: BaseObserver | None = None

    def start(self) -> None:
        """Start the shared native observer."""
        self.native = self._observer_factory()
        self.native.start()

    def place(self, inbox: InboxState) -> None:
        """(Re)place the observer watch on the inbox root; fall back to polling when the
        inotify limits are hit."""
        self.remove(inbox)
        decide_mode(inbox, self._mountinfo)
        inbox.audit = False  # the first scan after this finds what no event could report
        inbox.suspects.clear()
        inbox.real_root = os.path.realpath(inbox.root)
        handler = Nudger(lambda path, is_dir: self._nudge(inbox, path, is_dir))
        try:
            inbox.observer = self._observer_for(inbox)
            inbox.watch = inbox.observer.schedule(
                handler, str(inbox.root), recursive=inbox.spec.recursive, event_filter=EVENT_TYPES
            )
        except OSError as exc:
            inbox.watch = None
            if inbox.use_polling or exc.errno not in INOTIFY_FIXES:
                inbox.log.warning("cannot watch inbox; relying on rescans", error=str(exc))
                return
            log_inotify_fix(inbox.log, exc)
            inbox.forced_polling = "inotify limit reached"
            self.place(inbox)

    def _observer_for(self, inbox: InboxState) -> BaseObserver:
        if not inbox.use_polling:
            assert self.native is not None
            return self.native
        if inbox.observer is None or inbox.observer is self.native:
            observer = self._polling_factory(inbox.spec.poll_interval_s)
            observer.start()
            inbox.observer = observer
        return inbox.observer

    def remove(self, inbox: InboxState) -> None:
        """Take the inbox's watch away (its observer keeps running)."""
        watch, inbox.watch = inbox.watch, None
        if watch is not None and inbox.observer is not None:
            try:
                inbox.observer.unschedule(watch)
            except (KeyError, OSError, RuntimeError) as exc:
                inbox.log.debug("unschedule failed", error=repr(exc))

    def release(self, inbox: InboxState) -> None:
        """An inbox no longer watched: its watch taken away, its own polling observer
        stopped (not joined: a daemon thread, it ends at its next poll)."""
        self.remove(inbox)
        if inbox.observer is not None and inbox.observer is not self.native:
            inbox.observer.stop()
        inbox.observer = None

    def stop(self, inboxes: Iterable[InboxState], timeout_s: float) -> None:
        """Stop every observer (the native one and each polling one) and join them."""
        inboxes = list(inboxes)
        found = [self.native, *(i.observer for i in inboxes)]
        observers = {id(o): o for o in found if o is not None}
        for inbox in inboxes:
            inbox.observer = inbox.watch = None
        self.native = None
        for observer in observers.values():
            observer.stop()
        for observer in observers.values():
            observer.join(timeout_s)
