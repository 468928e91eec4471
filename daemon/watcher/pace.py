"""PURE: how long the checker thread sleeps between two passes.

The checker wakes at once for every file event (the observers nudge it) and for every
request (a rescan, inboxes added or removed). Between events it sleeps until the next
thing due: a file's settle sample (at most one tick, ``settle_s / 2`` capped at 1 s, while
files are being written), a dead watch's restart, a rescan suspect's grace, the next full
rescan. What no event reports (a share unmounted under a native watch, a polling emitter
that died) is found by the pass itself, so with nothing due the sleep backs off from one
tick to :data:`IDLE_MAX_S`, and no further than the shortest poll interval of a polled
inbox (its emitter polls that often anyway; a dead one is restarted that soon).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from daemon.idle import IdleBackoff
from daemon.stability import DEFAULT_SETTLE_S
from daemon.watcher.health import MISSED_EVENT_GRACE_S
from daemon.watcher.inbox import InboxState, WatchedInbox

IDLE_MAX_S = 10.0
"""The checker's longest sleep with nothing due: how soon an unmounted share pauses its
inbox when no event says so (the unit's WatchdogSec is 120 s: well within half of it)."""
SOONEST_S = 0.01


def tick_for(inboxes: Sequence[WatchedInbox]) -> float:
    """The checker's tick while files settle: half the shortest settle time, 50 ms to 1 s."""
    settle = min((i.settle_s for i in inboxes), default=DEFAULT_SETTLE_S)
    return max(0.05, min(1.0, settle / 2))


def idle_cap(inboxes: Iterable[InboxState]) -> float:
    """The longest idle sleep: :data:`IDLE_MAX_S`, or a polled inbox's poll interval."""
    polled = [i.spec.poll_interval_s for i in inboxes if i.use_polling]
    return min([IDLE_MAX_S, *polled])


def next_due(inboxes: Iterable[InboxState]) -> float | None:
    """The soonest restart of a dead watch or end of a rescan suspect's grace (monotonic)."""
    due: list[float] = []
    for inbox in inboxes:
        if inbox.restart_at is not None:
            due.append(inbox.restart_at)
        due.extend(since + MISSED_EVENT_GRACE_S for since in inbox.suspects.values())
    return min(due, default=None)


class CheckerPace:
    """The checker's sleep after a pass at ``now`` (see the module docstring)."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._idle = IdleBackoff(tick_s)

    def retick(self, tick_s: float) -> None:
        """The inboxes changed: a new tick, and the backoff starts afresh."""
        self.tick_s = self._idle.first_s = tick_s
        self._idle.reset()

    def wait_s(
        self,
        inboxes: Sequence[InboxState],
        *,
        now: float,
        next_rescan: float,
        woken: bool,
    ) -> float:
        """Seconds until the next pass; ``woken``: an event or a request came since the last."""
        settling = [t for i in inboxes if (t := i.tracker.next_due()) is not None]
        if settling:  # files being written: sampled on time, never later than one tick
            self._idle.reset()
            return min(self.tick_s, max(SOONEST_S, min(settling) - now + 0.001))
        wait_s = self._idle.next_s(active=woken, cap_s=idle_cap(inboxes))
        due = [next_rescan, *([d] if (d := next_due(inboxes)) is not None else [])]
        return max(SOONEST_S, min(wait_s, min(due) - now + 0.001))
