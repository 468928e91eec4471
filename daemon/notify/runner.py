"""The :class:`Notifications`: what writes the outbox and what empties it.

Writing: two journal taps. ``Journal.before_commit`` gets every job change of a transaction
just before its COMMIT: a job filed (``done``) or failed (``failed``) adds its hook row and its
notification rows in that same transaction (a savepoint: a bug here never loses the job's
own change). ``Journal.on_note`` sees the account pause note being written: an
``account_paused`` row in that transaction, when submits were not paused already.

Emptying: two threads, off the engine's step threads: one runs hooks (one at a time, each
with its timeout), one sends notifications (and makes the daily summary when it is due).
Each wakes when a row is written and when the next backoff ends.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

import structlog

from daemon.clock import Clock, SystemClock
from daemon.journal import ACCOUNT_NOTE, Journal
from daemon.notify.hooks import log_hook, run_hook
from daemon.notify.messages import (
    HOOK_OF_TOPIC,
    Message,
    account_message,
    hook_env,
    job_message,
    job_topic,
    process_env,
)
from daemon.notify.outbox import HOOK, NOTIFY, Outbox, OutboxRow
from daemon.notify.sender import AppriseSender
from daemon.notify.summary import make_summary, summary_day, summary_key
from daemon.records import Job

log = structlog.get_logger(__name__)

HooksFor = Callable[[str], Mapping[str, Sequence[str]]]
"""inbox name -> topic (``done``, ``failed``) -> the hook's argv (absent: no hook)."""
IDLE_S = 30.0
"""How long a delivery thread sleeps with nothing due (the summary's hour is looked at)."""


class Notifications:
    """Hooks and notifications of one daemon. ``start()`` attaches the taps to the journal
    and starts the two threads; ``stop()`` ends them (a hook still running is left: its row
    stays waiting and runs again after the restart)."""

    def __init__(
        self,
        *,
        journal: Journal,
        hooks_for: HooksFor,
        urls: Sequence[str] = (),
        topics: Collection[str] = (),
        summary_hour: int = 9,
        hook_timeout_s: float = 60.0,
        clock: Clock | None = None,
        sender: AppriseSender | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.journal = journal
        self.outbox = Outbox(journal, clock=clock or SystemClock())
        self._hooks_for = hooks_for
        self._sender = sender if sender is not None else AppriseSender(urls)
        self._topics = frozenset(topics)
        self._summary_hour = summary_hour
        self._hook_timeout_s = hook_timeout_s
        self._env = dict(os.environ if env is None else env)
        self._stopping = threading.Event()
        self._wakes = {HOOK: threading.Event(), NOTIFY: threading.Event()}
        self._threads: list[threading.Thread] = []
        self._summary_done: str | None = None

    # ------------------------------------------------------------ lifecycle

    def attach(self) -> None:
        """The journal taps only (no threads): rows are written, nothing is sent."""
        self.journal.before_commit = self._staged
        self.journal.on_note = self._noted

    def start(self) -> None:
        """The taps, then the threads; what waits from an earlier run is tried at once."""
        self.attach()
        waiting = self.outbox.retry_now()
        if waiting:
            log.info("deliveries waiting from an earlier run: trying them now", waiting=waiting)
        for channel, send in ((HOOK, self._run_hook_row), (NOTIFY, self._send_row)):
            thread = threading.Thread(
                target=self._loop, args=(channel, send), name=f"mvsep-{channel}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stopping.set()
        for wake in self._wakes.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self.journal.before_commit = None
        self.journal.on_note = None

    def wake(self) -> None:
        for wake in self._wakes.values():
            wake.set()

    # ------------------------------------------------------------ taps (in a transaction)

    def _staged(self, db: sqlite3.Connection, changes: Sequence[tuple[Job, str, str]]) -> None:
        ended = [(job, kind, reason) for job, kind, reason in changes if job_topic(job, kind)]
        if ended:  # most changes end nothing: no savepoint for them
            self._in_savepoint(db, lambda: self._stage_jobs(db, ended))

    def _noted(self, db: sqlite3.Connection, key: str, text: str | None) -> None:
        if key != ACCOUNT_NOTE or text is None or "account_paused" not in self._topics:
            return
        if db.execute("SELECT 1 FROM notes WHERE key = ?", (key,)).fetchone() is not None:
            return  # paused already: told when it began
        message = account_message(text)
        self._in_savepoint(db, lambda: self._stage_message(db, "account_paused", message, None))

    def _in_savepoint(self, db: sqlite3.Connection, stage: Callable[[], int]) -> None:
        db.execute("SAVEPOINT outbox")
        try:
            added = stage()
        except Exception:  # a bug here must not undo the change it reports
            db.execute("ROLLBACK TO outbox")
            log.exception("notification rows not written")
            added = 0
        db.execute("RELEASE outbox")
        if added:
            self.wake()

    def _stage_jobs(self, db: sqlite3.Connection, changes: Sequence[tuple[Job, str, str]]) -> int:
        added = 0
        for job, kind, reason in changes:
            topic = job_topic(job, kind)
            if topic is None:
                continue
            argv = self._hooks_for(job.source.inbox).get(topic)
            if argv:
                payload = {"argv": list(argv), "env": hook_env(job, topic, reason)}
                added += Outbox.add(db, channel=HOOK, topic=topic, target=HOOK_OF_TOPIC[topic],
                                    payload=payload | {"file": str(job.source.path)},
                                    now=self.outbox.clock.time(), job_id=job.id)  # fmt: skip
            if topic in self._topics:
                added += self._stage_message(db, topic, job_message(job, topic, reason), job)
        return added

    def _stage_message(
        self, db: sqlite3.Connection, topic: str, message: Message, job: Job | None
    ) -> int:
        payload: dict[str, object] = {"title": message.title, "body": message.body}
        if job is not None:
            payload["file"] = str(job.source.path)
        now = self.outbox.clock.time()
        for target in self._sender.targets():
            Outbox.add(db, channel=NOTIFY, topic=topic, target=target, payload=payload, now=now,
                       job_id=None if job is None else job.id)  # fmt: skip
        return len(self._sender.targets())

    # ------------------------------------------------------------ delivery threads

    def _loop(self, channel: str, send: Callable[[OutboxRow], str | None]) -> None:
        wake = self._wakes[channel]
        while not self._stopping.is_set():
            wake.clear()
            try:
                self.step(channel, send)
                due_in = self.outbox.next_due_in(channel)
            except Exception:
                if self._stopping.is_set() or self.journal.closed:
                    return
                log.exception("notification delivery failed; trying again", channel=channel)
                due_in = IDLE_S
            wake.wait(IDLE_S if due_in is None else min(due_in, IDLE_S))

    def step(self, channel: str, send: Callable[[OutboxRow], str | None] | None = None) -> int:
        """One pass of a channel: what is due is delivered (and the summary made)."""
        if channel == NOTIFY:
            self.make_summary_if_due()
        chosen = send or (self._run_hook_row if channel == HOOK else self._send_row)
        return self.outbox.deliver_due(channel, chosen)

    def _run_hook_row(self, row: OutboxRow) -> str | None:
        argv = [str(a) for a in row.payload["argv"]]
        env = process_env(self._env, row.payload["env"])
        result = run_hook(argv, env, timeout_s=self._hook_timeout_s)
        log_hook(row.target, argv, result, job_id=row.job_id, file=row.payload.get("file"))
        return result.error

    def _send_row(self, row: OutboxRow) -> str | None:
        self._sender.send(row.target, str(row.payload["title"]), str(row.payload["body"]))
        return None

    def make_summary_if_due(self) -> bool:
        """Write today's summary rows once its hour has come (once a day, per URL)."""
        if "daily_summary" not in self._topics or not self._sender.targets():
            return False
        now = self.outbox.clock.time()
        day = summary_day(datetime.fromtimestamp(now).astimezone(), self._summary_hour)
        if day is None or day == self._summary_done:
            return False
        message = make_summary(self.journal, day, now)
        payload = {"title": message.title, "body": message.body}
        for target in self._sender.targets():
            self.outbox.enqueue(channel=NOTIFY, topic="daily_summary", target=target,
                                payload=payload, key=summary_key(day, target))  # fmt: skip
        self._summary_done = day
        return True
