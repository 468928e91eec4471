"""One daemon per journal, and a journal that stays where it is.

:class:`JournalGuard` holds two locks for the journal's lifetime:

* an exclusive ``flock`` on ``<journal>.lock`` (the holder's pid written in it);
* on Linux, a lock that deleting files cannot defeat: a listening socket in the abstract
  namespace named after the journal's *directory* (device and inode) and file name. It
  lives with the process, not on disk; a second daemon started after the journal and its
  lock file were deleted (and created anew by it) finds the name taken and is refused with
  the first one's pid (``SO_PEERCRED``).

And it notices the journal deleted or replaced under a running daemon (SQLite would go on
writing to the unlinked file, and the history would be lost): :meth:`JournalGuard.check`
raises :class:`~daemon.errors.JournalGoneError` when the path no longer holds the file that
was opened, or the lock file is gone or another file. A person must look: nothing restarts
onto an empty journal by itself. The daemon exits with code 2 (which the systemd unit does
not restart) and leaves ``<journal>.gone`` saying why; until a person removes it, every
start on that journal path is refused the same way (launchd's KeepAlive restarts on any
failure).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import IO

from daemon.errors import JournalGoneError, JournalLockedError

__all__ = ["JournalGuard", "lock_path_of", "marker_path_of", "refuse_if_marked"]

_PEER_TIMEOUT_S = 1.0


def lock_path_of(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def marker_path_of(path: Path) -> Path:
    """``<journal>.gone``: left by a run that found its journal deleted or replaced."""
    return path.with_name(path.name + ".gone")


def refuse_if_marked(path: Path) -> None:
    """Refuse to open ``path`` while the marker of a run that lost its journal is there."""
    marker = marker_path_of(path)
    try:
        why = marker.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        why = f"(unreadable: {exc})"
    raise JournalGoneError(
        f"journal {path}: an earlier run stopped because its journal was deleted or replaced "
        f"while it ran: {why}\nNot starting onto a journal without that history. Once you "
        f"have looked (and restored the journal, or accepted starting afresh), remove {marker}"
    )


def _leave_marker(path: Path, text: str) -> None:
    marker = marker_path_of(path)
    with contextlib.suppress(OSError):  # the folder may be gone too, or read-only
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"pid {os.getpid()}: {text}\n", encoding="utf-8")


class JournalGuard:
    """The locks of an open journal and the check that it is still in place."""

    def __init__(self, path: Path) -> None:
        refuse_if_marked(path)
        self.path = path
        self.lock_path = lock_path_of(path)
        self._lock_file = _lock_file(path, self.lock_path)
        try:
            self._stable = _stable_lock(path)
        except BaseException:
            _unlock(self._lock_file)
            raise
        self._journal_id: tuple[int, int] | None = None

    def opened(self) -> None:
        """Remember the journal file now open at :attr:`path` (call once it exists)."""
        st = os.stat(self.path)
        self._journal_id = (st.st_dev, st.st_ino)

    def check(self) -> None:
        """Raise :class:`JournalGoneError` if the journal or its lock file was deleted or
        replaced since they were opened. Two ``stat`` calls; an unreadable path for another
        reason (a share hiccup) proves nothing and is not reported."""
        try:
            problem = self._problem()
        except OSError:  # a share that does not answer proves nothing
            return
        if problem is None:
            return
        text = (
            f"journal {self.path}: {problem} while mvsep-watch was running. Stopped: going on "
            "would lose the job history and could pay for files twice. A person must look: "
            f"restore the journal from a backup, or start again on purpose (an empty journal "
            f"sends every file still in the inboxes again), then remove "
            f"{marker_path_of(self.path)}"
        )
        _leave_marker(self.path, f"{problem} (at {time.strftime('%Y-%m-%d %H:%M:%S %z')})")
        raise JournalGoneError(text)

    def _problem(self) -> str | None:
        journal = _stat(self.path)
        if journal is None:
            return "the journal file was deleted"
        if self._journal_id is not None and journal != self._journal_id:
            return "the journal file was replaced by another file"
        lock = _stat(self.lock_path)
        if lock is None:
            return "its lock file was deleted"
        held = os.fstat(self._lock_file.fileno())
        if lock != (held.st_dev, held.st_ino):
            return "its lock file was replaced by another file"
        return None

    def release(self) -> None:
        if self._stable is not None:
            self._stable.close()
            self._stable = None
        _unlock(self._lock_file)


def _lock_file(path: Path, lock_path: Path) -> IO[str]:
    fh = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise JournalLockedError(
            f"journal {path} is in use by another mvsep-watch (pid {holder}; lock file "
            f"{lock_path}): stop it first, or use another [journal] path"
        ) from exc
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _stat(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``; None if it is gone (other errors are raised)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _unlock(fh: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    fh.close()


def _stable_name(path: Path) -> bytes:
    folder = os.stat(path.parent)
    key = f"{folder.st_dev}:{folder.st_ino}:{path.name}".encode()
    return b"\0mvsep-watch/" + hashlib.sha256(key).hexdigest()[:40].encode()


def _stable_lock(path: Path) -> socket.socket | None:
    """The abstract-socket lock (Linux only; elsewhere the lock file and :meth:`check`)."""
    if not sys.platform.startswith("linux"):
        return None
    name = _stable_name(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
        sock.listen(8)
    except OSError as exc:
        sock.close()
        raise JournalLockedError(
            f"journal {path} is in use by another mvsep-watch (pid {_holder_pid(name)}), "
            "although its lock file was not locked: the journal or its lock file was probably "
            "deleted while that one ran. Stop it first (it stops by itself once it notices)"
        ) from exc
    return sock


def _holder_pid(name: bytes) -> str:
    """The pid of the process listening on ``name`` (``unknown`` if it cannot be asked)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PEER_TIMEOUT_S)
    try:
        probe.connect(name)
        creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "unknown"
    finally:
        probe.close()
    return str(struct.unpack("3i", creds)[0])
