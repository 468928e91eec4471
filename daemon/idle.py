"""What the daemon's loops share to cost nothing while nothing happens.

A loop that has an event to wait for (a file event, a signal, a condition the engine sets)
waits for it; what has no event (an unmounted share, the journal deleted under the daemon)
is looked at on a timer that backs off while nothing changes: :class:`IdleBackoff` (PURE).
:func:`files_stamp` is the cheap change detector in front of a journal query: the ``stat``
of the journal and its WAL, which every commit, by any process, changes.

Every backoff is capped at :data:`LONGEST_IDLE_S` or less: each loop still ticks well within
half of systemd's ``WatchdogSec`` (120 s in the units), so the watchdog's liveness proof
(every loop ticked since the last ping, :mod:`daemon.sdnotify`) holds while idle.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

LONGEST_IDLE_S = 30.0
"""No loop waits longer than this between two ticks (the engine's scheduler: 30 s too)."""

Stamp = tuple[tuple[int, int, int] | None, ...]


class IdleBackoff:
    """PURE: the wait before a loop looks again: ``first_s`` after activity, then doubling
    while the loop finds nothing to do, up to the ``cap_s`` of each call."""

    def __init__(self, first_s: float) -> None:
        self.first_s = first_s
        self._next_s = first_s

    def next_s(self, *, active: bool, cap_s: float) -> float:
        """The wait now (``active``: something happened since the last look)."""
        if active:
            self._next_s = self.first_s
        wait_s = min(self._next_s, cap_s, LONGEST_IDLE_S)
        self._next_s = min(max(wait_s, self.first_s) * 2, cap_s, LONGEST_IDLE_S)
        return max(wait_s, 0.0)

    def reset(self) -> None:
        self._next_s = self.first_s


def journal_files(journal: Path) -> tuple[Path, Path]:
    """The journal and its write-ahead log (every commit appends to the WAL)."""
    return journal, journal.with_name(journal.name + "-wal")


def files_stamp(paths: Iterable[Path]) -> Stamp:
    """(inode, size, mtime in ns) of each path (None: missing): changes when one is written,
    replaced or deleted. A few ``stat`` calls, no SQLite."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)
