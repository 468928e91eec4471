"""Watch inbox folders and report each file once it has finished writing.

Threads (no asyncio, see ARCHITECTURE.md):

* one native watchdog observer (inotify / FSEvents / ReadDirectoryChangesW) shared by the
  natively watched inboxes, and one ``PollingObserver`` per polled inbox (network shares do
  not deliver events for writes made by other machines; ``poll = "auto"`` decides from the
  filesystem type, and :mod:`~daemon.watcher.health` keeps the choice honest and the
  emitters alive);
* one checker thread that owns every piece of state. Observer threads only *nudge* it: they
  put the event's paths in a dirty set. The checker ``stat``s dirty paths, scans the inboxes
  at start and every ``rescan_interval_s``, samples files whose settle window has elapsed and
  asks the pure :class:`~daemon.stability.StabilityTracker` whether they are ready. All
  callbacks (``on_ready``, ``on_removed``) run on the checker thread, one at a time. It
  sleeps until a nudge or the next thing due, backing off while idle (:mod:`.pace`).

Events are only hints: whatever an event says, the checker looks at the disk, so a lost or
overflowed event delays a file (until the next rescan) but never loses it. A file is reported
once per (path, size, mtime) per run; the consumer dedups against the journal anyway. A file
whose ``on_ready`` raised (it could not be journaled: the state disk is full) is not marked
reported: the next full rescan (within ``HANDOFF_RETRY_S``) offers it again.

An inbox whose root disappears (deleted, or an unmounted share, including a mount point
left behind empty) is *paused*: nothing under it is reported removed or forgotten. It is
re-watched and rescanned when it comes back. ``on_removed`` is only emitted for a path seen
during this run, after ``stat`` says ENOENT *and* the root is still there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.stability import Settled
from daemon.watcher.health import HealthNotes, MissedEvents, listable, next_delay, watch_alive
from daemon.watcher.inbox import (
    DEFAULT_RESCAN_INTERVAL_S,
    InboxState,
    ReadyFile,
    WatchedInbox,
    make_inbox,
    walk,
)
from daemon.watcher.mounts import MOUNTINFO
from daemon.watcher.observers import OverflowListener
from daemon.watcher.pace import CheckerPace, tick_for
from daemon.watcher.watches import Watches

log = structlog.get_logger("daemon.watcher")

Clock = Callable[[], float]
HANDOFF_RETRY_S = 30.0  # a failed hand-off brings the next rescan this close at least


@dataclass(frozen=True)
class _Update:
    """Inboxes to stop watching, then to watch; ``done`` once the checker applied it."""

    add: tuple[WatchedInbox, ...]
    remove: frozenset[str]
    done: threading.Event = field(default_factory=threading.Event)


class InboxWatcher:
    """Reports finished files of the inboxes to ``on_ready`` and vanished ones to
    ``on_removed``. ``start()``, ``stop()`` and ``rescan_now()`` are thread-safe;
    ``stop()`` then ``start()`` resumes with the same memory of what was reported.

    ``observer_factory`` builds the native observer (a seam for tests and for platforms
    where the native backend misbehaves), ``polling_factory`` a polling one from its
    interval; ``mountinfo`` is where ``poll = "auto"`` reads the filesystem types;
    ``on_health(name, json)`` hears each inbox's watch mode and pause when they change;
    ``clock`` is monotonic seconds. How each inbox is watched, and why, is in
    :mod:`~daemon.watcher.health`.
    """

    def __init__(
        self,
        *,
        inboxes: Sequence[WatchedInbox],
        on_ready: Callable[[ReadyFile], None],
        on_removed: Callable[[Path], None],
        rescan_interval_s: float = DEFAULT_RESCAN_INTERVAL_S,
        clock: Clock = time.monotonic,
        observer_factory: Callable[[], BaseObserver] = Observer,
        polling_factory: Callable[[float], BaseObserver] | None = None,
        mountinfo: Path = MOUNTINFO,
        on_health: Callable[[str, str], None] | None = None,
    ) -> None:
        names = [i.name for i in inboxes]
        if len(set(names)) != len(names):
            raise ValueError(f"inbox names must be unique: {names}")
        self._inboxes = [make_inbox(spec) for spec in inboxes]
        self._on_ready = on_ready
        self._on_removed = on_removed
        self._rescan_interval_s = rescan_interval_s
        self._clock = clock
        self._watches = Watches(
            observer_factory=observer_factory,
            polling_factory=polling_factory or (lambda s: PollingObserver(timeout=s)),
            mountinfo=mountinfo,
            nudge=self._nudge,
        )
        self._pace = CheckerPace(tick_for(inboxes))  # event-driven; backs off when idle
        self._health = None if on_health is None else HealthNotes(on_health)  # for `status`
        self._lifecycle = threading.Lock()
        self._pending: list[_Update] = []  # inbox updates for the checker thread, under _dirty_lock
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._woken = True  # an event or a request ended the last sleep: no backoff yet
        self._stopping = threading.Event()
        self._rescan_requested = True
        self._overflow_logged = False
        self._next_rescan = 0.0
        self.last_tick: float | None = None  # time.monotonic() of the last tick: sd watchdog
        self._thread: threading.Thread | None = None
        self._overflow_listener = OverflowListener(self._on_inotify_overflow)
        self._unreadable_logged: set[tuple[str, str]] = set()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start observers, watch every present inbox, and start the checker thread, whose
        first act is the startup scan. Watches are in place when this returns."""
        with self._lifecycle:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._watches.start()
            for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
                logging.getLogger(name).addHandler(self._overflow_listener)
            for inbox in self._inboxes:
                self._watch_first(inbox)
            self._rescan_requested = True
            self._thread = threading.Thread(target=self._run, name="inbox-checker", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the checker and all observers; returns within about ``timeout_s``."""
        with self._lifecycle:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stopping.set()
            self._wake.set()
            thread.join(timeout_s)
            self._watches.stop(self._inboxes, timeout_s)
            for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
                logging.getLogger(name).removeHandler(self._overflow_listener)
            self._apply_pending(running=False)  # posted while stopping: applied all the same

    def update_inboxes(
        self, *, add: Sequence[WatchedInbox] = (), remove: Collection[str] = (),
        timeout_s: float = 10.0,
    ) -> bool:  # fmt: skip
        """Stop watching the inboxes named in ``remove``, then watch those in ``add`` (a name in
        both is watched afresh with its new spec: a scan finds its files again, which the
        journal already knows). A removed inbox's files are forgotten, never reported removed.
        Thread-safe: applied on the checker thread between two passes; returns whether it was
        applied within ``timeout_s``. Raises ValueError for a name watched twice."""
        names = [i.spec.name for i in self._inboxes if i.spec.name not in remove]
        names += [spec.name for spec in add]
        if len(set(names)) != len(names):
            raise ValueError(f"inbox names must be unique: {names}")
        update = _Update(tuple(add), frozenset(remove))
        with self._lifecycle:
            if self._thread is None:
                self._apply(update, running=False)
                return True
            with self._dirty_lock:
                self._pending.append(update)
            self._wake.set()
        return update.done.wait(timeout_s)

    def _apply_pending(self, *, running: bool) -> None:
        with self._dirty_lock:
            pending, self._pending = self._pending, []
        for update in pending:
            self._apply(update, running=running)

    def _apply(self, update: _Update, *, running: bool) -> None:
        kept: list[InboxState] = []
        for inbox in self._inboxes:
            if inbox.spec.name not in update.remove:
                kept.append(inbox)
                continue
            self._watches.release(inbox)
            inbox.log.info("inbox no longer watched", path=str(inbox.root))
        added = [make_inbox(spec) for spec in update.add]
        for inbox in added:
            if running:
                self._watch_first(inbox)
            inbox.log.info("inbox watched", path=str(inbox.root))
        self._inboxes = kept + added  # a new list: other threads may be iterating the old
        self._pace.retick(tick_for([i.spec for i in self._inboxes]))
        update.done.set()

    def _watch_first(self, inbox: InboxState) -> None:
        """Watch a new inbox, or pause it (its folder is missing); the next pass scans it."""
        inbox.paused = not inbox.probe_root()[0]
        if inbox.paused:
            inbox.log.warning("inbox paused: folder missing (unmounted share?)",
                              path=str(inbox.root))  # fmt: skip
        else:
            self._watches.place(inbox)

    def paused(self) -> list[str]:
        """Inboxes paused now: their folder is missing, or their dead watch awaits a restart."""
        return [i.spec.name for i in self._inboxes if i.paused or i.restart_at is not None]

    def last_scans(self) -> dict[str, float | None]:
        """When each inbox's last full scan ended (``time.monotonic()``; None: not yet)."""
        return {i.spec.name: i.scanned_at for i in self._inboxes}

    def watch_modes(self) -> dict[str, str]:
        """How each inbox is watched now: ``"native"`` or ``"polling"``."""
        return {i.spec.name: "polling" if i.use_polling else "native" for i in self._inboxes}

    def rescan_now(self) -> None:
        """Ask for a full rescan of every inbox on the checker thread, without waiting."""
        self._rescan_requested = True
        self._wake.set()

    # ------------------------------------------------------------ observer side

    def _nudge(self, inbox: InboxState, path: str, is_dir: bool) -> None:
        with self._dirty_lock:
            inbox.dirty[path] = inbox.dirty.get(path, False) or is_dir
        self._wake.set()

    def _on_inotify_overflow(self) -> None:
        for inbox in self._inboxes:
            inbox.audit = False  # events were lost, and watchdog said so: not a missed event
        if not self._overflow_logged:
            self._overflow_logged = True
            log.warning(
                "inotify queue overflowed: events were lost; rescanning now",
                fix="sudo sysctl fs.inotify.max_queued_events=65536",
                persist="echo fs.inotify.max_queued_events=65536 | sudo tee -a "
                "/etc/sysctl.d/90-mvsep-watch.conf && sudo sysctl --system",
            )
        self.rescan_now()

    # ------------------------------------------------------------- checker loop

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.last_tick = time.monotonic()
            try:
                self._apply_pending(running=True)
                self._tick()
            except Exception:  # the checker must outlive any bug or odd filesystem
                log.exception("watcher tick failed")
            wait_s = self._pace.wait_s(
                self._inboxes, now=self._clock(), next_rescan=self._next_rescan, woken=self._woken
            )
            self._woken = self._wake.wait(wait_s)  # True: a nudge or a request ended it
            self._wake.clear()

    def _tick(self) -> None:
        now = self._clock()
        if self._rescan_requested or now >= self._next_rescan:
            self._rescan_requested = False
            self._next_rescan = now + self._rescan_interval_s
            for inbox in self._inboxes:
                inbox.needs_scan = True
        for inbox in self._inboxes:
            if self._stopping.is_set():
                return
            if inbox.restart_at is not None and not self._restart_watch(inbox, now):
                continue
            if not self._check_presence(inbox) or self._watch_died(inbox, now):
                continue
            if inbox.needs_scan:
                inbox.needs_scan = False
                self._scan(inbox)
            self._process_dirty(inbox)
            self._check_events(inbox)
            self._sample_due(inbox)
        if self._health is not None:
            self._health.report(self._inboxes)

    # --------------------------------------------------------------- watch health

    def _watch_died(self, inbox: InboxState, now: float) -> bool:
        """A dead emitter (watchdog issue 1065) pauses the inbox until its restart."""
        if watch_alive(inbox.observer, inbox.watch):
            if inbox.restart_delay and now - inbox.restarted_at >= inbox.restart_delay:
                inbox.restart_delay = 0.0  # it has kept running: start backoff afresh
            return False
        inbox.restart_delay = next_delay(inbox.restart_delay)
        inbox.restart_at = now + inbox.restart_delay
        self._watches.remove(inbox)
        inbox.log.warning(
            "file watching stopped (share unreachable?); inbox paused, restarting the watch",
            path=str(inbox.root),
            retry_in_s=inbox.restart_delay,
        )
        return True

    def _restart_watch(self, inbox: InboxState, now: float) -> bool:
        assert inbox.restart_at is not None
        if now < inbox.restart_at:
            return False
        if not listable(inbox.root):
            inbox.restart_delay = next_delay(inbox.restart_delay)
            inbox.restart_at = now + inbox.restart_delay
            inbox.log.debug("inbox still unreadable", retry_in_s=inbox.restart_delay)
            return False
        inbox.restart_at = None
        inbox.restarted_at = now
        self._watches.place(inbox)
        inbox.needs_scan = True
        inbox.log.info("file watching restarted; rescanning", path=str(inbox.root))
        return True

    def _check_events(self, inbox: InboxState) -> None:
        missed = MissedEvents.verdict(inbox, self._clock())
        if missed is None:
            return
        rel = inbox.relative(missed) or missed
        if inbox.spec.poll is False:
            if not inbox.missed_warned:
                inbox.missed_warned = True
                inbox.log.warning("a rescan found a file no event reported; set poll = true "
                                  "for this inbox (a network share?)", file=rel)  # fmt: skip
            return
        inbox.forced_polling = f"a rescan found {rel!r}, which no file event reported"
        inbox.log.warning(
            "file events are missing for this inbox: switching it to polling",
            file=rel,
            poll_interval_s=inbox.spec.poll_interval_s,
        )
        self._watches.place(inbox)

    # ------------------------------------------------------------- pause/resume

    def _check_presence(self, inbox: InboxState) -> bool:
        present, changed = inbox.probe_root()
        if not present:
            if not inbox.paused:
                inbox.paused = True
                self._watches.remove(inbox)
                inbox.log.warning("inbox paused: folder missing (unmounted share?)",
                                  path=str(inbox.root), tracked=len(inbox.tracker))  # fmt: skip
            return False
        if inbox.paused:
            inbox.paused = False
            inbox.log.info("inbox resumed: folder is back; rescanning", path=str(inbox.root))
        elif changed:
            inbox.log.info("inbox folder changed (remounted?); re-watching", path=str(inbox.root))
        else:
            return True
        inbox.needs_scan = True
        self._watches.place(inbox)
        return True

    # ----------------------------------------------------------------- scanning

    def _scan(self, inbox: InboxState, top: str | None = None) -> int:
        """Offer every file under ``top`` (default: the whole inbox) to the tracker; on a
        full scan, check tracked files that were not listed."""
        started = self._clock()
        seen: set[str] = set()
        if top is None:
            retry, inbox.handoff_failed = inbox.handoff_failed, set()
            for path in retry:
                inbox.tracker.restart(path, started)  # offered again once it has settled
        for path, st in walk(inbox, top or inbox.root_s, self._stopping):
            seen.add(path)
            if top is None:
                MissedEvents.found(inbox, path, st.st_size, started)
            self._offer(inbox, path, st)
        if top is None:
            inbox.audit = inbox.watch is not None
            for path in inbox.tracker.keys():
                if path not in seen:
                    self._recheck(inbox, path)
            inbox.log.debug("inbox scanned", files=len(seen), seconds=self._clock() - started)
        return len(seen)

    def _process_dirty(self, inbox: InboxState) -> None:
        with self._dirty_lock:
            dirty, inbox.dirty = inbox.dirty, {}
        for raw, is_dir in dirty.items():
            rel = inbox.relative(raw)
            if not rel:
                continue  # outside, or the root itself: presence checks handle it
            if not inbox.spec.recursive and "/" in rel:
                continue
            MissedEvents.heard(inbox, inbox.key(rel), is_dir)
            if is_dir:
                self._dirty_folder(inbox, rel)
                continue
            reason = inbox.rules(rel)
            if reason is not None:
                inbox.skip(rel, reason, "file")
                continue
            self._recheck(inbox, inbox.key(rel))

    def _dirty_folder(self, inbox: InboxState, rel: str) -> None:
        path = inbox.key(rel)
        if inbox.rules.folder_reason(tuple(rel.split("/"))) is not None:
            return
        if os.path.isdir(path):
            if inbox.spec.recursive:
                self._scan(inbox, path)  # created or moved in: its files are new
        else:
            self._gone(inbox, path)

    def _sample_due(self, inbox: InboxState) -> None:
        for path in inbox.tracker.due(self._clock()):
            self._recheck(inbox, path)

    def _recheck(self, inbox: InboxState, path: str) -> None:
        """Look at one file on disk: offer it to the tracker, or report it gone."""
        if os.path.islink(path):
            reason = inbox.link_reason(path)
            if reason is not None:
                inbox.skip(inbox.relative(path) or path, reason, "file")
                return
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._gone(inbox, path)
            return
        except OSError as exc:  # EIO, ESTALE, EACCES...: keep it, look again later
            inbox.log.debug("cannot stat file", file=path, error=str(exc))
            return
        self._offer(inbox, path, st)

    # -------------------------------------------------------- decisions, callbacks

    def _offer(self, inbox: InboxState, path: str, st: os.stat_result) -> None:
        if not inbox.worth_offering(path, st):
            return
        settled = inbox.tracker.observe(path, size=st.st_size, mtime=st.st_mtime, now=self._clock())
        if settled is not None:
            self._deliver(inbox, settled)

    def _deliver(self, inbox: InboxState, settled: Settled[str]) -> None:
        path = settled.key
        rel = inbox.relative(path) or os.path.basename(path)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:  # e.g. Windows sharing violation while a copy holds it
            if (inbox.spec.name, rel) not in self._unreadable_logged:
                self._unreadable_logged.add((inbox.spec.name, rel))
                inbox.log.info("file not readable yet; waiting", file=rel, error=str(exc))
            inbox.tracker.restart(path, self._clock())
            return
        ready = ReadyFile(Path(path), inbox.spec.name, rel, settled.size, settled.mtime)
        inbox.tracker.mark_reported(path)
        try:
            self._on_ready(ready)
        except Exception as exc:  # not journaled (e.g. the state disk is full): next rescan
            inbox.handoff_failed.add(path)
            self._next_rescan = min(self._next_rescan, self._clock() + HANDOFF_RETRY_S)
            fail = inbox.log.warning if isinstance(exc, OSError) else inbox.log.exception
            fail("file could not be handed on; the next rescan offers it again", file=rel,
                 error=str(exc) or repr(exc))  # fmt: skip
            return
        inbox.handoff_failed.discard(path)
        inbox.log.info("file ready", file=rel, size=settled.size)

    def _gone(self, inbox: InboxState, path: str) -> None:
        """``path`` (a file or a folder) is not there: report tracked files under it removed,
        unless the inbox root went away too, which pauses instead."""
        below = path.rstrip(os.sep) + os.sep
        keys = [k for k in inbox.tracker.keys() if k == path or k.startswith(below)]
        if not keys or not inbox.root_unchanged():
            return
        for key in keys:
            if os.path.lexists(key):
                continue
            inbox.tracker.forget(key)
            inbox.handoff_failed.discard(key)
            rel = inbox.relative(key) or key
            inbox.log.info("file removed", file=rel)
            try:
                self._on_removed(Path(key))
            except Exception:
                inbox.log.exception("on_removed failed", file=rel)
