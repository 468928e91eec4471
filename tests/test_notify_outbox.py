"""The outbox: rows written in the job change's own transaction, the backoff with an
injected clock (ManualClock), giving up, the account pause, the daily summary.

Real parts: a real journal file, apprise sending to a real loopback HTTP receiver; only
the time is injected (the tests call ``Notifications.step`` instead of running its threads).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from notify_rig import Receiver, fail_job, file_job, source
from structlog.testing import capture_logs

from daemon.clock import ManualClock
from daemon.errors import JournalError
from daemon.jobs import JobState
from daemon.journal import ACCOUNT_NOTE, Journal
from daemon.notify.messages import notifications_line
from daemon.notify.outbox import NOTIFY, backoff_s
from daemon.notify.runner import Notifications
from daemon.notify.summary import summary_day


def local_stamp(hour: int, minute: int = 0) -> float:
    """A wall-clock time at this local hour (the machine's zone, as the daemon reads it)."""
    return datetime(2026, 12, 2, hour, minute).astimezone().timestamp()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_start=local_stamp(10))


@pytest.fixture
def journal(tmp_path: Path, clock: ManualClock) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite", clock=clock) as j:
        yield j


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def notifier(journal: Journal, clock: ManualClock, urls: list[str], **kw: Any) -> Notifications:
    kw.setdefault("topics", ("failed", "done", "account_paused"))
    n = Notifications(journal=journal, hooks_for=lambda inbox: {}, urls=urls, clock=clock, **kw)
    n.attach()  # the taps only: the test drives the deliveries with step()
    return n


def rows(journal: Journal) -> list[dict[str, Any]]:
    db = sqlite3.connect(journal.path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY id")]
    finally:
        db.close()


def test_backoff_doubles_from_the_base_to_the_cap() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_s(20) == 3600
    assert backoff_s(3, base_s=1, cap_s=3) == 3


def test_the_row_is_written_in_the_transaction_of_the_job_change(
    journal: Journal, clock: ManualClock, tmp_path: Path, rx: Receiver
) -> None:
    notifier(journal, clock, [rx.url])
    failed = fail_job(journal, tmp_path)
    [row] = rows(journal)
    assert (row["channel"], row["topic"], row["job_id"], row["state"]) == (
        "notify", "failed", failed.id, "waiting",
    )  # fmt: skip
    assert "no RIFF header" in json.loads(row["payload"])["body"]
    assert rx.url not in json.dumps(row)  # the URL is named by its id only
    # one transaction: a commit that fails after the rows were staged keeps neither
    staged = journal.before_commit
    assert staged is not None

    def then_fail(db: sqlite3.Connection, changes: Any) -> None:
        staged(db, changes)
        if any(kind == "failed" for _, kind, _ in changes):
            raise sqlite3.OperationalError("disk I/O error")

    journal.before_commit = then_fail
    job, _ = journal.record_seen(source(tmp_path, "other.wav"), size=1, mtime=1.0)
    with pytest.raises(JournalError):
        journal.mark_failed(job.id, "not audio")
    assert journal.get(job.id).state is JobState.READY
    assert len(rows(journal)) == 1


def test_a_bug_while_staging_never_undoes_the_job_change(
    journal: Journal, clock: ManualClock, tmp_path: Path
) -> None:
    def broken(inbox: str) -> dict[str, list[str]]:
        raise RuntimeError("a bug")

    n = Notifications(journal=journal, hooks_for=broken, urls=(), topics=("failed",), clock=clock)
    n.attach()
    with capture_logs() as logs:
        failed = fail_job(journal, tmp_path)
    assert journal.get(failed.id).state is JobState.FAILED
    assert rows(journal) == []
    assert any(x["event"] == "notification rows not written" for x in logs)


def test_a_failed_send_backs_off_and_is_sent_when_the_receiver_answers(
    journal: Journal, clock: ManualClock, tmp_path: Path, rx: Receiver
) -> None:
    n = notifier(journal, clock, [rx.url])
    rx.status = 500
    fail_job(journal, tmp_path)
    start = clock.time()
    with capture_logs() as logs:
        assert n.step(NOTIFY) == 1
    [row] = rows(journal)
    assert (row["attempts"], row["state"], row["next_at"]) == (1, "waiting", start + 30)
    assert "500" in row["last_error"]
    assert [x["log_level"] for x in logs if "notification" in x["event"]] == ["warning"]
    line = notifications_line(journal.outbox_status())
    assert line is not None and line.startswith("notifications: 1 waiting, last error (failed")
    clock.advance(29)
    assert n.step(NOTIFY) == 0  # not due yet
    clock.advance(1)
    assert n.step(NOTIFY) == 1
    [row] = rows(journal)
    assert (row["attempts"], row["next_at"]) == (2, start + 30 + 60)
    rx.status = 200
    clock.advance(59)
    assert n.step(NOTIFY) == 0 and rx.posts == []
    clock.advance(1)
    assert n.step(NOTIFY) == 1
    [row] = rows(journal)
    assert (row["state"], row["attempts"]) == ("sent", 3)
    assert len(rx.posts) == 1 and "bad.wav failed" in rx.posts[0]["title"]
    assert n.step(NOTIFY) == 0 and len(rx.posts) == 1  # sent once
    assert notifications_line(journal.outbox_status()) is None  # delivered: nothing to say


def test_a_notification_is_given_up_after_three_days(
    journal: Journal, clock: ManualClock, tmp_path: Path, rx: Receiver
) -> None:
    n = notifier(journal, clock, [rx.url])
    rx.status = 503
    fail_job(journal, tmp_path)
    for _ in range(200):
        n.step(NOTIFY)
        [row] = rows(journal)
        if row["state"] != "waiting":
            break
        clock.advance(row["next_at"] - clock.time())
    assert row["state"] == "given_up"
    assert 2.9 * 86400 < row["done_at"] - row["created_at"] <= 3 * 86400
    line = notifications_line(journal.outbox_status())
    assert line is not None and line.startswith("notifications: 0 waiting, 1 given up")


def test_a_url_that_left_the_config_is_given_up_at_once(
    journal: Journal, clock: ManualClock, tmp_path: Path, rx: Receiver
) -> None:
    notifier(journal, clock, [rx.url])
    fail_job(journal, tmp_path)
    later = Notifications(journal=journal, hooks_for=lambda i: {}, urls=(), clock=clock)
    assert later.step(NOTIFY) == 1
    [row] = rows(journal)
    assert row["state"] == "given_up" and "no longer in [notify] urls" in row["last_error"]
    assert rx.posts == []


def test_the_account_pause_is_told_once_when_it_begins(
    journal: Journal, clock: ManualClock, rx: Receiver
) -> None:
    n = notifier(journal, clock, [rx.url])
    journal.set_note(ACCOUNT_NOTE, "MVSEP refused the API token")
    journal.set_note(ACCOUNT_NOTE, "MVSEP refused the API token")  # re-read, still paused
    assert [r["topic"] for r in rows(journal)] == ["account_paused"]
    n.step(NOTIFY)
    assert rx.posts[0]["title"] == "mvsep-watch: submits paused"
    assert "refused the API token" in rx.posts[0]["message"]
    journal.set_note(ACCOUNT_NOTE, None)
    journal.set_note(ACCOUNT_NOTE, "account disabled")
    assert [r["topic"] for r in rows(journal)] == ["account_paused"] * 2


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [(8, 59, None), (9, 0, "2026-12-02"), (23, 59, "2026-12-02")],
)
def test_summary_day(hour: int, minute: int, expected: str | None) -> None:
    assert summary_day(datetime(2026, 12, 2, hour, minute).astimezone(), 9) == expected


def test_the_daily_summary_is_made_once_a_day_at_its_hour(tmp_path: Path, rx: Receiver) -> None:
    clock = ManualClock(wall_start=local_stamp(7))
    with Journal(tmp_path / "journal.sqlite", clock=clock) as journal:
        topics = ("daily_summary",)
        n = notifier(journal, clock, [rx.url], topics=topics, summary_hour=9)
        file_job(journal, tmp_path, "one.wav")
        fail_job(journal, tmp_path, "bad.wav")
        assert rows(journal) == []  # only the summary was asked for
        clock.advance(3600)  # 08:00
        assert n.make_summary_if_due() is False
        clock.advance(3600)  # 09:00
        assert n.step(NOTIFY) == 1
        body = rx.posts[0]["message"]
        assert "files filed: 1" in body and "stems: 2" in body
        assert "credits used: 2" in body and "failures: 1" in body and "bad.wav" in body
        clock.advance(3 * 3600)
        assert n.make_summary_if_due() is False
        restarted = notifier(journal, clock, [rx.url], topics=topics, summary_hour=9)
        assert restarted.make_summary_if_due() is True  # a new process looks again...
        assert restarted.step(NOTIFY) == 0 and len(rx.posts) == 1  # ...the day's key holds
        clock.advance(22 * 3600)  # the next day, 10:00
        assert restarted.step(NOTIFY) == 1 and len(rx.posts) == 2
        assert "files filed: 0" in rx.posts[1]["message"]
