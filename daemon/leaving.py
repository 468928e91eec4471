"""Leaving the process without waiting for engine workers still inside a request.

Used by `run` after the daemon stopped (SIGTERM/SIGINT) and by every command's Ctrl-C
(`daemon.cli`): a worker on the wire would otherwise hold Python's exit for its whole read
timeout.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import structlog

from daemon.engine.scheduler import ENGINE_THREAD_PREFIX

log = structlog.get_logger(__name__)


def leave_without_busy_workers(grace_s: float = 0.5, *, code: int = 0) -> None:
    """End the process now if worker threads are still busy after the engine stopped.

    A worker can be inside a request already on the wire (an upload, a slow answer) or a
    retry's back-off; Python's exit would wait for it, past the 10 s promised. Its job is
    safe: every state change is in the journal (closed by now), a create whose answer never
    came is reconciled through the history, a download resumes from its ``.part``. So the
    process leaves without it, with exit code ``code``.
    """
    deadline = time.monotonic() + grace_s
    busy = [t for t in threading.enumerate() if _holds_exit(t)]
    for thread in busy:
        thread.join(max(0.0, deadline - time.monotonic()))
    names = [t.name for t in busy if t.is_alive()]
    if not names:
        return
    log.warning("leaving busy worker threads behind; their jobs resume on restart", threads=names)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _holds_exit(thread: threading.Thread) -> bool:
    """Whether Python's exit would wait for ``thread``: a non-daemon thread, or a worker of
    the engine's pool. The pool's workers are started by the (daemon) scheduler thread and
    so are daemon threads too, yet ``concurrent.futures`` joins them at exit all the same: a
    worker waiting for a create's answer held the exit for the whole read timeout."""
    if thread is threading.main_thread() or not thread.is_alive():
        return False
    return not thread.daemon or thread.name.startswith(ENGINE_THREAD_PREFIX)
