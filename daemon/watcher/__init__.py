"""Watch inbox folders and report each file once it has finished writing.

* :mod:`~daemon.watcher.checker`: :class:`InboxWatcher`, the checker thread (start/stop,
  the loop, rescans, dirty paths, pause/resume, ``on_ready``/``on_removed``, inboxes
  added or removed while running);
* :mod:`~daemon.watcher.watches`: each inbox's observer watch placed and removed;
* :mod:`~daemon.watcher.inbox`: :class:`WatchedInbox`, :class:`ReadyFile` and one inbox's
  runtime state (root probe, ignore rules, the skip log);
* :mod:`~daemon.watcher.observers`: the watchdog side (subscribed events, the nudging
  handler, inotify limits and overflow);
* :mod:`~daemon.watcher.pace`: how long the checker sleeps (until a nudge or the next thing
  due; backing off while idle).
"""

from daemon.watcher.checker import InboxWatcher
from daemon.watcher.inbox import (
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_RESCAN_INTERVAL_S,
    ReadyFile,
    WatchedInbox,
)
from daemon.watcher.observers import EVENT_TYPES, INOTIFY_FIXES, INOTIFY_LOGGER

__all__ = [
    "DEFAULT_POLL_INTERVAL_S",
    "DEFAULT_RESCAN_INTERVAL_S",
    "EVENT_TYPES",
    "INOTIFY_FIXES",
    "INOTIFY_LOGGER",
    "InboxWatcher",
    "ReadyFile",
    "WatchedInbox",
]
