"""What the watcher knows of one inbox: its spec, its runtime state, its root on disk.

:class:`WatchedInbox` is the configured inbox (``service.py`` maps it from config);
:class:`InboxState` is its runtime state, touched only by the checker thread: the ignore
rules, the stability tracker, the pause/resume probe of the root, and the skip log (each
skipped path logged once per run; the daemon's own folders are skipped silently).
"""

from __future__ import annotations

import os
import stat as stat_mod
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import structlog
from watchdog.observers.api import BaseObserver, ObservedWatch

from daemon.stability import (
    DEFAULT_AUDIO_EXTENSIONS,
    DEFAULT_SETTLE_S,
    IgnoreRules,
    StabilityTracker,
)

log = structlog.get_logger("daemon.watcher")

DEFAULT_RESCAN_INTERVAL_S = 300.0
DEFAULT_POLL_INTERVAL_S = 10.0


@dataclass(frozen=True)
class WatchedInbox:
    """One inbox folder, as ``service.py`` maps it from config.

    ``excluded_dirs`` are the daemon's own folders (output/failed/archive) when they live
    inside the inbox: absolute, or relative to ``path``. Folders outside the inbox are ignored.
    ``empty_wait_s``: how long an empty file waits before it is handed on (None: a few
    settle times, :func:`~daemon.stability.empty_wait_for`). ``follow_symlinks``: process
    links to files outside the inbox (see :meth:`InboxState.link_reason`).
    ``poll``: ``"auto"`` picks polling or native events from the filesystem type.
    """

    name: str
    path: Path
    poll: bool | Literal["auto"] = "auto"
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    settle_s: float = DEFAULT_SETTLE_S
    recursive: bool = True
    extensions: frozenset[str] = DEFAULT_AUDIO_EXTENSIONS
    excluded_dirs: tuple[Path, ...] = ()
    follow_symlinks: bool = False
    empty_wait_s: float | None = None


@dataclass(frozen=True)
class ReadyFile:
    """A file that has finished writing. ``path`` = inbox root / ``relative_path``."""

    path: Path
    inbox: str
    relative_path: str  # POSIX separators, e.g. "album/01 intro.flac"
    size: int
    mtime: float


def relative_excluded(root: Path, dirs: Sequence[Path]) -> tuple[PurePosixPath, ...]:
    out: list[PurePosixPath] = []
    for folder in dirs:
        if not folder.is_absolute():
            out.append(PurePosixPath(folder.as_posix()))
            continue
        for base, target in ((root, folder), (Path(os.path.realpath(root)), folder.resolve())):
            try:
                out.append(PurePosixPath(target.relative_to(base).as_posix()))
                break
            except ValueError:
                continue
    return tuple(p for p in out if p.parts)


_WIN_HIDDEN_OR_SYSTEM = 0x2 | 0x4  # FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM


@dataclass(eq=False)
class InboxState:
    """Runtime state of one inbox; touched only by the checker thread (and start/stop)."""

    spec: WatchedInbox
    root: Path
    rules: IgnoreRules
    tracker: StabilityTracker[str]  # keyed by absolute path strings under `root`
    log: Any
    use_polling: bool
    real_root: str | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the root when last present
    mount_point: bool = False
    paused: bool = False
    needs_scan: bool = True
    observer: BaseObserver | None = None
    watch: ObservedWatch | None = None
    dirty: dict[str, bool] = field(default_factory=dict)  # path -> is_directory
    skips_logged: set[str] = field(default_factory=set)
    forced_polling: str | None = None  # why this inbox polls whatever its config says
    mode_logged: tuple[bool, str] | None = None
    audit: bool = False  # full rescans check that events reported what they find
    suspects: dict[str, float] = field(default_factory=dict)  # rel -> found by a rescan at
    restart_at: float | None = None  # the watch died: paused until then
    restart_delay: float = 0.0
    restarted_at: float = 0.0
    missed_warned: bool = False
    missed_found: int = 0  # rescans that found a file no event reported (/metrics)
    handoff_failed: set[str] = field(default_factory=set)  # on_ready raised: next rescan
    scanned_at: float | None = None  # time.monotonic() a walk of the whole inbox last ended

    @property
    def root_s(self) -> str:
        return str(self.root)

    def relative(self, path: str) -> str | None:
        """``path`` relative to the root with "/" separators, "" for the root itself, None
        when outside. Plain string work: this runs for every file of every scan. NFC on
        macOS, whose FSEvents and directory listings may disagree on Unicode normalisation."""
        for base in (self.root_s, self.real_root):
            if base is None:
                continue
            if path == base:
                return ""
            prefix = base if base.endswith(os.sep) else base + os.sep
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            if os.sep != "/":
                rel = rel.replace(os.sep, "/")
            if sys.platform == "darwin":
                rel = unicodedata.normalize("NFC", rel)
            return rel
        return None

    def key(self, rel: str) -> str:
        """The tracker key (absolute path under the configured root) of a relative path."""
        return os.path.join(self.root_s, rel.replace("/", os.sep) if os.sep != "/" else rel)

    def probe_root(self) -> tuple[bool, bool]:
        """(present, changed). Present: the root is a directory and, if it was a mount point,
        still is one (an unmounted share leaves its mount point behind as an empty folder that
        must not read as empty). Changed: it is not the folder seen last time (remounted,
        or deleted and recreated), so the observer watch must be placed again."""
        try:
            st = os.stat(self.root)
        except OSError:
            return False, False
        if not stat_mod.S_ISDIR(st.st_mode):
            return False, False
        identity = (st.st_dev, st.st_ino)
        if identity == self.identity:
            return True, False
        if self.mount_point and not os.path.ismount(self.root):
            return False, False  # was a mount point, now the bare folder underneath
        changed = self.identity is not None
        self.identity = identity
        self.mount_point = os.path.ismount(self.root)
        return True, changed

    def root_unchanged(self) -> bool:
        """The root is still the very folder last seen present: safe to believe a missing
        file is really gone (not hidden by an unmount or a remount)."""
        try:
            st = os.stat(self.root)
        except OSError:
            return False
        return stat_mod.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) == self.identity

    def link_reason(self, path: str) -> str | None:
        """Why the symbolic link at ``path`` is not followed, or None to follow it.

        A link whose target is inside this inbox is skipped: the target is processed on its
        own (or deliberately ignored, e.g. in ``_processed``), and following it would pay
        twice for one file. A link to a folder is never followed (loops, whole trees). A
        link to a file outside the inbox would upload whatever the daemon's user can read
        and file its stems where the inbox's users read them: only with
        ``follow_symlinks = true``."""
        target = os.path.realpath(path)
        base = (self.real_root or os.path.realpath(self.root)).rstrip(os.sep) + os.sep
        if target.startswith(base):
            return "link to a file inside this inbox (the file itself is processed)"
        if os.path.isdir(target):
            return "link to a folder (folder links are not followed)"
        if not self.spec.follow_symlinks:
            return (
                f"link to a file outside the inbox ({target}); "
                "set follow_symlinks = true for this inbox to process such links"
            )
        return None

    def worth_offering(self, path: str, st: os.stat_result) -> bool:
        """A regular file without Windows' hidden or system attribute (a skip is logged)."""
        if not stat_mod.S_ISREG(st.st_mode):
            return False
        if getattr(st, "st_file_attributes", 0) & _WIN_HIDDEN_OR_SYSTEM:
            self.skip(self.relative(path) or path, "hidden or system attribute", "file")
            return False
        return True

    def skip(self, rel: str, reason: str, kind: str) -> None:
        """Log once per run that ``rel`` (a ``kind``: file or folder) is skipped, and why;
        nothing for the daemon's own folders and what it moved into them (``_failed``, the
        archive, an output folder inside the inbox), which are not skipped *input*."""
        parts = tuple(rel.split("/"))
        if self.rules.own_folder(parts if kind == "folder" else parts[:-1]):
            return
        if rel not in self.skips_logged:
            self.skips_logged.add(rel)
            self.log.info(f"{kind} skipped", file=rel, reason=reason)


def walk(
    inbox: InboxState, top: str, stopping: threading.Event
) -> Iterator[tuple[str, os.stat_result]]:
    """Non-ignored regular files under ``top`` with their stat; prunes ignored folders,
    does not follow folder symlinks, logs unreadable folders and goes on."""
    stack = [top]
    while stack and not stopping.is_set():
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as exc:
            inbox.log.warning("cannot list folder", file=str(folder), error=str(exc))
            continue
        for entry in listed:
            found = _walk_entry(inbox, entry, stack)
            if found is not None:
                yield found
    if top == inbox.root_s and not stopping.is_set():
        inbox.scanned_at = time.monotonic()  # `/readyz`: rescans happen


def _walk_entry(
    inbox: InboxState, entry: os.DirEntry[str], stack: list[str]
) -> tuple[str, os.stat_result] | None:
    rel = inbox.relative(entry.path)
    if not rel:
        return None
    try:
        if entry.is_dir(follow_symlinks=False):
            reason = inbox.rules.folder_reason(tuple(rel.split("/")))
            if reason is not None:
                inbox.skip(rel, reason, "folder")
            elif inbox.spec.recursive:
                stack.append(entry.path)
            return None
        reason = inbox.rules(rel)
        if reason is None and entry.is_symlink():
            reason = inbox.link_reason(entry.path)
        if reason is not None:
            inbox.skip(rel, reason, "file")
            return None
        return inbox.key(rel), entry.stat()
    except OSError as exc:  # vanished between listing and stat, or unreadable
        inbox.log.debug("cannot stat entry", file=str(rel), error=str(exc))
        return None


def make_inbox(spec: WatchedInbox) -> InboxState:
    root = Path(os.path.abspath(spec.path))
    rules = IgnoreRules(
        extensions=spec.extensions, excluded_dirs=relative_excluded(root, spec.excluded_dirs)
    )
    return InboxState(
        spec=spec,
        root=root,
        rules=rules,
        tracker=StabilityTracker(settle_s=spec.settle_s, empty_settle_s=spec.empty_wait_s),
        log=log.bind(inbox=spec.name),
        use_polling=spec.poll is True,
    )
