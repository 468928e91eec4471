"""PURE finished-writing detection and the inbox ignore filter. No I/O, no clock.

:class:`StabilityTracker` is fed ``(path, size, mtime, now)`` samples and says when a file's
size and mtime have stayed the same for ``settle_s``. Only *changes* of (size, mtime) matter,
never mtime compared with ``now``, so a NAS whose clock is off cannot make a file look old.
A file counts as settled only when a sample taken at least ``settle_s`` after its current
(size, mtime) was first seen confirms it: a file still growing is never ready early. An
*empty* file waits longer, ``empty_settle_s``: a program that creates a file, holds it open
and fills it seconds later (a DAW bouncing, a slow first write over SMB) leaves it at 0
bytes meanwhile; only an empty file that stays empty that long is handed on (to fail).

:class:`IgnoreRules` decides, from a path relative to the inbox root, whether a file is
skipped and why (the reason is logged by the watcher, once per path per run).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_SETTLE_S = 5.0
EMPTY_WAIT_SETTLES = 6
EMPTY_WAIT_MIN_S = 30.0


def empty_wait_for(settle_s: float) -> float:
    """How long an empty file must stay empty before it is handed on: a few settle times,
    at least :data:`EMPTY_WAIT_MIN_S`."""
    return max(EMPTY_WAIT_MIN_S, EMPTY_WAIT_SETTLES * settle_s)


# The API documents no list of input formats: MVSEP decodes uploads with ffmpeg and its upload
# form accepts the common audio containers. These are the audio formats users actually drop
# (lossless, lossy, Apple/Windows/legacy lossless). Video containers (mp4, mkv, mov) are left
# out on purpose: add them per inbox with `extensions` if wanted.
DEFAULT_AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        "wav", "wave", "flac", "mp3", "m4a", "aac", "ogg", "oga", "opus",
        "aif", "aiff", "aifc", "wma", "ape", "wv", "alac",
    }
)  # fmt: skip

# Files that operating systems, NAS boxes and DAWs drop beside audio.
SYSTEM_FILE_NAMES: frozenset[str] = frozenset(
    {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r", ".directory"}
)
PARTIAL_FILE_PATTERNS: tuple[str, ...] = (
    "*.part", "*.partial", "*.crdownload", "*.download", "*.tmp", "*.temp", "*.!qb",
    "*.!ut", "*.opdownload", "~$*", ".~lock.*", ".syncthing.*", "*.sb-*",
)  # fmt: skip
DAW_CACHE_PATTERNS: tuple[str, ...] = (
    "*.pk", "*.reapeaks", "*.asd", "*.peak", "*.sfk", "*.ovw", "*.pkf", "*.gpk",
)  # fmt: skip
# Folder names (matched case-insensitively against every folder component of the path).
JUNK_DIR_PATTERNS: tuple[str, ...] = (
    "@eadir", "#recycle", "#snapshot", ".stfolder", ".stversions", ".trash-*", ".trashes",
    "$recycle.bin", "system volume information", ".snapshot", "lost+found", ".appledouble",
)  # fmt: skip
DAEMON_DIR_PREFIXES: tuple[str, ...] = ("_mvsep", ".mvsep-watch")


def _compile(patterns: Iterable[str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((p, re.compile(fnmatch.translate(p))) for p in patterns)


_PARTIAL = _compile(PARTIAL_FILE_PATTERNS)
_DAW = _compile(DAW_CACHE_PATTERNS)
_JUNK_DIRS = _compile(JUNK_DIR_PATTERNS)


def _matches(name: str, patterns: tuple[tuple[str, re.Pattern[str]], ...]) -> str | None:
    """The first pattern matching the lower-cased ``name``, or None."""
    for pattern, regex in patterns:
        if regex.match(name):
            return pattern
    return None


def _parts(path: str | PurePath) -> tuple[str, ...]:
    """Path components; strings use "/" separators (the cheap path, hot in scans)."""
    if isinstance(path, str):
        return tuple(p for p in path.split("/") if p and p != ".")
    return PurePosixPath(path.as_posix()).parts


def normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    """``{".WAV", "flac"}`` -> ``{"wav", "flac"}``."""
    return frozenset(ext.strip().lstrip(".").lower() for ext in extensions if ext.strip())


@dataclass(frozen=True)
class IgnoreRules:
    """The skip filter of one inbox: ``rules(relative_path) -> reason | None``.

    ``relative_path`` is relative to the inbox root (``"album/01.flac"``; strings use "/").
    ``excluded_dirs`` are folders relative to the root that belong to the daemon (output,
    failed, archive folders living inside the inbox); they and all below them are skipped.
    """

    extensions: frozenset[str] = DEFAULT_AUDIO_EXTENSIONS
    excluded_dirs: tuple[PurePosixPath, ...] = ()
    _excluded_lower: frozenset[tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", normalise_extensions(self.extensions))
        dirs = tuple(PurePosixPath(PurePath(d).as_posix()) for d in self.excluded_dirs)
        object.__setattr__(self, "excluded_dirs", dirs)
        lowered = frozenset(tuple(p.lower() for p in d.parts) for d in dirs if d.parts)
        object.__setattr__(self, "_excluded_lower", lowered)

    def __call__(self, relative_path: str | PurePath) -> str | None:
        """Why the file at ``relative_path`` is skipped, or None when it is a candidate."""
        parts = _parts(relative_path)
        if not parts:
            return "inbox root is not a file"
        reason = self.folder_reason(parts[:-1])
        return reason if reason is not None else self.file_reason(parts[-1])

    def folder_reason(self, folder_parts: tuple[str, ...] | str | PurePath) -> str | None:
        """Why a folder (relative to the root, as parts or a path) is skipped with its
        contents, or None. Lets a scan prune whole trees such as ``@eaDir``."""
        if not isinstance(folder_parts, tuple):
            folder_parts = _parts(folder_parts)
        lowered = tuple(part.lower() for part in folder_parts)
        for depth in range(1, len(lowered) + 1):
            if lowered[:depth] in self._excluded_lower:
                return f"daemon folder {'/'.join(folder_parts[:depth])!r} (excluded_dirs)"
        for part, low in zip(folder_parts, lowered, strict=True):
            if low.startswith(DAEMON_DIR_PREFIXES):
                return f"daemon folder {part!r}"
            pattern = _matches(low, _JUNK_DIRS)
            if pattern is not None:
                return f"NAS/system junk folder {part!r}"
            if low.startswith("."):
                return f"hidden folder {part!r}"
        return None

    def own_folder(self, folder_parts: tuple[str, ...] | str | PurePath) -> bool:
        """Whether a folder is (or lies in) one of the daemon's own: an ``excluded_dirs``
        entry (output, failed, archive) or a ``_mvsep*``/``.mvsep-watch`` folder. What the
        daemon moves there is its own doing, so a watcher skips it without a word."""
        if not isinstance(folder_parts, tuple):
            folder_parts = _parts(folder_parts)
        lowered = tuple(part.lower() for part in folder_parts)
        if any(lowered[:depth] in self._excluded_lower for depth in range(1, len(lowered) + 1)):
            return True
        return any(low.startswith(DAEMON_DIR_PREFIXES) for low in lowered)

    def file_reason(self, name: str) -> str | None:
        """Why a file name (no folders) is skipped, or None."""
        low = name.lower()
        if low in SYSTEM_FILE_NAMES:
            return f"system file {name!r}"
        if low.startswith("._"):
            return "macOS resource fork (._*)"
        pattern = _matches(low, _PARTIAL)
        if pattern is not None:
            return f"partial download or temp file ({pattern})"
        pattern = _matches(low, _DAW)
        if pattern is not None:
            return f"DAW peak/cache file ({pattern})"
        if low.startswith("."):
            return "hidden file"
        if low.startswith(DAEMON_DIR_PREFIXES):
            return "daemon file"
        ext = low.rpartition(".")[2] if "." in low else ""
        if ext not in self.extensions:
            shown = f".{ext}" if ext else "no extension"
            return f"not an audio extension ({shown})"
        return None


@dataclass
class _Entry:
    size: int
    mtime: float
    since: float  # when this (size, mtime) was first seen
    last_seen: float  # the latest sample confirming it
    reported: bool = False


@dataclass(frozen=True)
class Settled(Generic[K]):
    """A path whose (size, mtime) has been unchanged for ``settle_s``."""

    key: K
    size: int
    mtime: float


class StabilityTracker(Generic[K]):
    """Per-path (size, mtime) history deciding "finished writing"; no I/O, ``now`` passed in.

    Usage by the single checker thread: call :meth:`observe` with every fresh ``stat`` of a
    path (from an event, a scan, or because :meth:`due` listed it). When it returns a
    :class:`Settled`, check the file can be opened, then call :meth:`mark_reported` (or
    :meth:`restart` to wait another ``settle_s``). A reported path is not returned again
    unless its (size, mtime) changes. :meth:`forget` drops a path that is gone.
    """

    def __init__(
        self, *, settle_s: float = DEFAULT_SETTLE_S, empty_settle_s: float | None = None
    ) -> None:
        if settle_s < 0:
            raise ValueError(f"settle_s must be >= 0, got {settle_s}")
        self.settle_s = settle_s
        empty = empty_wait_for(settle_s) if empty_settle_s is None else empty_settle_s
        self.empty_settle_s = max(settle_s, empty)
        self._entries: dict[K, _Entry] = {}

    def _window(self, entry: _Entry) -> float:
        return self.empty_settle_s if entry.size == 0 else self.settle_s

    def observe(self, key: K, *, size: int, mtime: float, now: float) -> Settled[K] | None:
        """Record a sample; return the path when it has just become settled (not yet
        reported), else None."""
        entry = self._entries.get(key)
        if entry is None or entry.size != size or entry.mtime != mtime:
            entry = self._entries[key] = _Entry(size=size, mtime=mtime, since=now, last_seen=now)
            return None if self._window(entry) > 0 else Settled(key, size, mtime)
        entry.last_seen = max(entry.last_seen, now)
        if entry.reported or entry.last_seen - entry.since < self._window(entry):
            return None
        return Settled(key, entry.size, entry.mtime)

    def due(self, now: float) -> list[K]:
        """Unreported paths whose settle window has elapsed by ``now``: sample them next."""
        return [
            key
            for key, entry in self._entries.items()
            if not entry.reported and now - entry.since >= self._window(entry)
        ]

    def next_due(self) -> float | None:
        """The earliest time :meth:`due` will list something, or None when nothing waits."""
        times = [e.since + self._window(e) for e in self._entries.values() if not e.reported]
        return min(times, default=None)

    def mark_reported(self, key: K) -> None:
        """The path was handed on; stay quiet about it until its (size, mtime) changes."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.reported = True

    def restart(self, key: K, now: float) -> None:
        """Wait another settle window before offering the path again (e.g. it could not be
        opened yet, or the consumer failed)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.since = entry.last_seen = now
            entry.reported = False

    def forget(self, key: K) -> bool:
        """Drop a path (deleted or moved out). True when it was known."""
        return self._entries.pop(key, None) is not None

    def known_size(self, key: K) -> int | None:
        """The size last sampled for ``key``, or None for a path not tracked."""
        entry = self._entries.get(key)
        return None if entry is None else entry.size

    def is_reported(self, key: K) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.reported

    def keys(self) -> list[K]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
