"""Is each inbox's watch telling the truth, and is it still running?

Three decisions about how one inbox is watched, made on the checker thread:

* :func:`decide_mode`: native events or polling. ``poll = true/false`` is obeyed; ``auto``
  asks :mod:`~daemon.watcher.mounts` about the filesystem. A reason forcing polling for the
  rest of the run (the inotify limits, events found missing) wins over both. Logged when
  the choice or its reason changes, with the reason.
* :class:`MissedEvents`: a full rescan of a natively watched inbox that finds a file
  (new, or a new size) that no event reported means events do not reach us (a share
  written by other machines, a bind mount, a FUSE backend). The file is a *suspect* for a
  grace period, since its event may just be on its way; if none arrives, the inbox switches
  to polling (``auto``) and says so, or warns once (``poll = false``).
* :class:`HealthNotes`: each inbox's mode and pause, told to a callback when they change
  (the service journals them for ``status``, which runs in another process).
* :func:`watch_alive`: watchdog's emitters can stop for good (watchdog issue 1065: the
  polling emitter stops when its folder reads as missing, even for a moment; an emitter
  whose first snapshot fails dies at once). A dead emitter pauses its inbox and is
  restarted with capped exponential backoff, once the folder can be listed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.observers.api import BaseObserver, ObservedWatch

from daemon.watcher.inbox import InboxState
from daemon.watcher.mounts import watch_mode

MISSED_EVENT_GRACE_S = 2.0
"""How long a file a rescan found may wait for its event before events count as missing."""
RESTART_BACKOFF_S = (1.0, 60.0)
"""First and longest wait before restarting a dead watch."""


def decide_mode(inbox: InboxState, mountinfo: Path) -> None:
    """Set ``inbox.use_polling`` for the next watch, logging a changed choice."""
    poll = inbox.spec.poll
    if inbox.forced_polling is not None:
        choice = (True, inbox.forced_polling)
    elif poll is True or poll is False:
        choice = (poll, f"poll = {str(poll).lower()} in the config")
    else:
        choice = watch_mode(inbox.root, mountinfo=mountinfo)
    inbox.use_polling = choice[0]
    if choice != inbox.mode_logged:
        inbox.mode_logged = choice
        inbox.log.info(
            "inbox watch mode",
            mode="polling" if choice[0] else "native events",
            reason=choice[1],
            path=str(inbox.root),
        )


class MissedEvents:
    """Suspects of one rescan and what becomes of them; all on the checker thread."""

    @staticmethod
    def found(inbox: InboxState, path: str, size: int, now: float) -> None:
        """A full rescan lists ``path`` with ``size``: a suspect if events said nothing."""
        if not inbox.audit or inbox.use_polling or inbox.watch is None:
            return
        if inbox.tracker.known_size(path) != size:
            inbox.suspects.setdefault(path, now)

    @staticmethod
    def heard(inbox: InboxState, path: str, is_dir: bool) -> None:
        """An event named ``path`` (a folder: all below it): not a suspect."""
        inbox.suspects.pop(path, None)
        if is_dir and inbox.suspects:
            below = path.rstrip(os.sep) + os.sep
            for key in [k for k in inbox.suspects if k.startswith(below)]:
                del inbox.suspects[key]

    @staticmethod
    def verdict(inbox: InboxState, now: float) -> str | None:
        """The first suspect whose grace has passed (events are missing), else None."""
        for path, since in inbox.suspects.items():
            if now - since >= MISSED_EVENT_GRACE_S:
                inbox.suspects.clear()
                inbox.missed_found += 1
                return path
        return None


def watch_alive(observer: BaseObserver | None, watch: ObservedWatch | None) -> bool:
    """Whether the emitter thread serving ``watch`` still runs (True when not watched, or
    when the observer keeps no emitter for it: nothing to judge)."""
    if observer is None or watch is None:
        return True
    emitters = [e for e in list(observer.emitters) if e.watch == watch]
    return not emitters or any(e.is_alive() for e in emitters)


def next_delay(previous: float) -> float:
    first, cap = RESTART_BACKOFF_S
    return min(cap, previous * 2) if previous else first


def listable(root: Path) -> bool:
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError:
        return False
    return True


def inbox_health(inbox: InboxState) -> dict[str, str | int | None]:
    """How the inbox is watched now and why, why it is paused (None: it is not), and how
    many rescans found a file no event reported (``missed``: for ``/metrics``)."""
    paused = None
    if inbox.paused:
        paused = "folder missing (unmounted share?)"
    elif inbox.restart_at is not None:
        paused = "file watching stopped; restarting the watch"
    reason = inbox.mode_logged[1] if inbox.mode_logged is not None else None
    return {"mode": "polling" if inbox.use_polling else "native", "reason": reason,
            "paused": paused, "missed": inbox.missed_found}  # fmt: skip


class HealthNotes:
    """Tells ``on_health(name, json_text)`` each inbox's :func:`inbox_health` when it
    changed (the checker thread calls :meth:`report` after each tick)."""

    def __init__(self, on_health: Callable[[str, str], None]) -> None:
        self._on_health = on_health
        self._told: dict[str, dict[str, str | int | None]] = {}
        self._warned = False

    def report(self, inboxes: Iterable[InboxState]) -> None:
        for inbox in inboxes:
            health = inbox_health(inbox)
            if self._told.get(inbox.spec.name) == health:
                continue
            try:
                self._on_health(inbox.spec.name, json.dumps(health, sort_keys=True))
            except Exception as exc:  # the state disk full: watching goes on; told again later
                if not self._warned:
                    self._warned = True
                    inbox.log.warning("inbox watch state not journaled", error=str(exc))
                continue
            self._told[inbox.spec.name] = health
