"""The decision part of the batched credit reads (issue 12): which filed jobs want their
credits, when the next history read is due, who is given up, and when a further page is
worth a call. Pure: a manual clock, no I/O."""

from __future__ import annotations

import dataclasses
import math

import pytest

from daemon.clock import ManualClock
from daemon.engine.credits import (
    GIVE_UP_S,
    MAX_LOOKS,
    MAX_PAGES,
    CreditBook,
    Wanted,
    more_pages,
)
from daemon.mvsep.models import HistoryEntry
from daemon.records import Job, JobState
from tests.test_jobs import SOURCE

EVERY_S = 15.0


def _job(job_id: int, **changes: object) -> Job:
    base = Job(id=job_id, source=SOURCE, size=1, mtime=1.0, created_at=0.0, updated_at=0.0,
               state=JobState.FILED, mvsep_hash=f"hash-{job_id}")  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _page(hashes: list[str]) -> list[HistoryEntry]:
    return [HistoryEntry(hash=h, job_exists=True, credits=1.0) for h in hashes]


def test_nothing_wanted_means_no_read() -> None:
    book = CreditBook()
    assert book.due_in(0.0, every_s=EVERY_S) == math.inf
    assert book.take(0.0, every_s=EVERY_S, force=True) is None


def test_jobs_without_a_hash_or_with_credits_are_not_wanted() -> None:
    book = CreditBook()
    book.want(_job(1, mvsep_hash=None), 0.0)  # filed from an earlier result: nothing paid
    book.want(_job(2, used_credits=3.0), 0.0)
    assert book.wanted_ids() == set()


def test_the_read_waits_for_the_oldest_then_takes_every_job_filed_meanwhile() -> None:
    clock = ManualClock()
    book = CreditBook()
    book.want(_job(1), clock.time())
    clock.advance(10.0)
    book.want(_job(2), clock.time())
    assert book.due_in(clock.time(), every_s=EVERY_S) == pytest.approx(5.0)
    assert book.take(clock.time(), every_s=EVERY_S) is None  # not due yet
    clock.advance(5.0)
    taken = book.take(clock.time(), every_s=EVERY_S)
    assert taken is not None and [j.id for j in taken] == [1, 2]
    assert book.due_in(clock.time(), every_s=EVERY_S) == math.inf  # one read at a time
    assert book.take(clock.time(), every_s=EVERY_S, force=True) is None
    assert book.finish([1, 2], {1: 2.0, 2: 4.0}, clock.time()) == []
    assert book.wanted_ids() == set()


def test_reads_are_at_most_every_interval() -> None:
    clock = ManualClock()
    book = CreditBook()
    book.want(_job(1), clock.time())
    clock.advance(EVERY_S)
    assert book.take(clock.time(), every_s=EVERY_S) is not None
    book.finish([1], {}, clock.time())  # not found yet: still wanted
    clock.advance(1.0)
    book.want(_job(2), clock.time() - 100.0)  # an old job (from the journal at start)
    assert book.due_in(clock.time(), every_s=EVERY_S) == pytest.approx(EVERY_S - 1.0)
    clock.advance(EVERY_S - 1.0)
    assert book.due_in(clock.time(), every_s=EVERY_S) == 0.0


def test_a_forced_read_is_taken_at_once() -> None:
    book = CreditBook()
    book.want(_job(1), 0.0)
    taken = book.take(0.0, every_s=EVERY_S, force=True)
    assert taken is not None and [j.id for j in taken] == [1]


def test_a_job_never_found_is_given_up_after_the_bound_of_looks() -> None:
    clock = ManualClock()
    book = CreditBook()
    book.want(_job(1), clock.time())
    given_up: list[Wanted] = []
    reads = 0
    while book.wanted_ids():
        clock.advance(EVERY_S)
        assert book.take(clock.time(), every_s=EVERY_S) is not None
        reads += 1
        given_up += book.finish([1], {}, clock.time())
        assert reads <= MAX_LOOKS
    assert reads == MAX_LOOKS and [(w.job.id, w.looks) for w in given_up] == [(1, MAX_LOOKS)]
    assert book.due_in(clock.time(), every_s=EVERY_S) == math.inf  # never retried


def test_a_job_wanted_too_long_is_given_up_at_its_next_read() -> None:
    clock = ManualClock()
    book = CreditBook()
    book.want(_job(1), clock.time())
    clock.advance(GIVE_UP_S)
    book.want(_job(2), clock.time())  # a new job goes on being wanted
    assert book.take(clock.time(), every_s=EVERY_S, force=True) is not None
    assert [w.job.id for w in book.finish([1, 2], {}, clock.time())] == [1]
    assert book.wanted_ids() == {2}


def test_a_job_wanted_after_a_read_began_is_left_for_the_next() -> None:
    book = CreditBook()
    book.want(_job(1), 0.0)
    assert book.take(EVERY_S, every_s=EVERY_S) is not None
    book.want(_job(2), EVERY_S)  # filed while the read ran
    book.finish([1], {1: 1.0}, EVERY_S)
    assert book.wanted_ids() == {2}
    assert book.due_in(EVERY_S, every_s=EVERY_S) == pytest.approx(EVERY_S)


def test_a_stopped_read_counts_nothing() -> None:
    book = CreditBook()
    book.want(_job(1), 0.0)
    assert book.take(0.0, every_s=EVERY_S, force=True) is not None
    book.release()
    assert book.wanted_ids() == {1}
    for _ in range(MAX_LOOKS - 1):  # the stopped read was not a look
        assert book.take(0.0, every_s=EVERY_S, force=True) is not None
        assert book.finish([1], {}, 0.0) == []
    assert book.take(0.0, every_s=EVERY_S, force=True) is not None
    assert [w.job.id for w in book.finish([1], {}, 0.0)] == [1]


def test_the_journal_is_loaded_once() -> None:
    book = CreditBook()
    assert book.first_look() and not book.first_look()


FULL = [f"h{i}" for i in range(20)]


@pytest.mark.parametrize(
    ("page", "entries", "wanted", "held", "at_mvsep", "expected"),
    [
        (0, FULL, {"x"}, {"h3"}, set(), True),  # held one of ours: more may be below
        (0, FULL, {"x"}, set(), {"h0"}, True),  # newer jobs still at MVSEP on top
        (0, FULL, {"x"}, set(), set(), False),  # nothing of ours: the rest is older
        (0, FULL, set(), {"h3"}, set(), False),  # every wanted job found
        (0, FULL[:7], {"x"}, {"h3"}, set(), False),  # a short page: the end of the history
        (MAX_PAGES - 1, FULL, {"x"}, {"h3"}, set(), False),  # the bound
    ],
)
def test_a_further_page_only_while_it_may_hold_wanted_jobs(
    page: int,
    entries: list[str],
    wanted: set[str],
    held: set[str],
    at_mvsep: set[str],
    expected: bool,
) -> None:
    assert more_pages(page, _page(entries), wanted=wanted, held=held, at_mvsep=at_mvsep) is expected
