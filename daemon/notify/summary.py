"""The daily summary: when it is due (PURE) and what it counts (from the journal).

One summary a local day, at ``[notify] summary_hour`` or at the first moment after it that
the daemon runs; the outbox's ``key`` (``daily_summary:DAY:URL-ID``) makes it one per day
and URL, also across restarts. It counts the 24 hours before it was made.
"""

from __future__ import annotations

from datetime import datetime

from daemon.journal import Journal
from daemon.notify.messages import Message, summary_message

WINDOW_S = 86400.0


def summary_day(local_now: datetime, hour: int) -> str | None:
    """PURE: the day (``YYYY-MM-DD``) whose summary is due at ``local_now`` (an aware
    local time), or None before ``hour`` o'clock."""
    if local_now.hour < hour:
        return None
    return local_now.date().isoformat()


def summary_key(day: str, target: str) -> str:
    return f"daily_summary:{day}:{target}"


def make_summary(journal: Journal, day: str, now: float) -> Message:
    """The summary of the 24 hours to ``now`` (wall clock)."""
    filed, failed = journal.finished_since(now - WINDOW_S)
    return summary_message(day, filed, failed)
