"""Tests of daemon.engine.queue_watch: the hint from the account's count of unfinished jobs
(pure), the watch's thread (a read callable and an event: no network needed for the loop),
and the engine against the emulator: a done job is seen at once while others wait."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until
from test_engine_rig import rig

from daemon.engine import Engine
from daemon.engine.queue_watch import QueueWatch, Reading, done_hint, known_running, worth_watching
from daemon.errors import ApiServerError
from daemon.jobs import JobState
from daemon.pacing import DurationEstimator, PollPolicy


def test_no_reading_no_hint() -> None:
    assert done_hint(None, frozenset({1, 2}), frozenset()) == (0, frozenset())


def test_a_count_below_the_jobs_held_says_that_many_are_done() -> None:
    reading = Reading(jobs=frozenset({1, 2, 3}), unfinished=1)
    assert done_hint(reading, frozenset({1, 2, 3}), frozenset()) == (2, frozenset({1, 2, 3}))


def test_jobs_seen_done_or_being_polled_since_the_read_are_taken_off() -> None:
    reading = Reading(jobs=frozenset({1, 2, 3, 4}), unfinished=2)  # two of four done
    count, among = done_hint(reading, frozenset({2, 3, 4}), frozenset())  # 1 seen done since
    assert (count, among) == (1, frozenset({2, 3, 4}))
    count, among = done_hint(reading, frozenset({2, 3, 4}), frozenset({4}))  # a get in flight
    assert (count, among) == (0, frozenset({2, 3}))


def test_jobs_the_read_did_not_know_only_hide_a_done() -> None:
    """A create answered after the read was sent (or another client's job on the token)
    is counted by MVSEP, not by us: the count is too high, never too low."""
    reading = Reading(jobs=frozenset({1, 2}), unfinished=2)  # 1 is done, job 3 counted
    assert done_hint(reading, frozenset({1, 2, 3}), frozenset())[0] == 0
    assert done_hint(Reading(frozenset({1}), unfinished=5), frozenset({1}), frozenset())[0] == 0


def test_the_watch_reads_while_there_is_something_to_watch_and_skips_failed_reads() -> None:
    stopping = threading.Event()
    readings: list[Reading] = []
    got_two = threading.Event()
    held: list[frozenset[int] | None] = [frozenset({7, 8})]
    answers: list[int | Exception] = [ApiServerError("503", endpoint="user"), 1, 0]

    def read() -> int | None:
        answer = answers.pop(0) if answers else 0
        if isinstance(answer, Exception):
            raise answer
        return answer

    def on_reading(reading: Reading) -> None:
        readings.append(reading)
        if len(readings) == 2:
            held[0] = None  # nothing left to watch: the thread ends
            got_two.set()

    watch = QueueWatch(
        read=read,
        held=lambda: held[0],
        on_reading=on_reading,
        stopping=stopping,
        interval_s=0.01,
        clock=lambda: 5.0,
    )
    watch.want()
    assert got_two.wait(10)
    assert readings == [Reading(frozenset({7, 8}), 1, 5.0), Reading(frozenset({7, 8}), 0, 5.0)]
    stopping.set()


def test_the_engine_sees_a_done_job_at_once_while_another_waits_for_its_slot(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Two slots, three files, jobs of ~1 s that the estimator expects to take 120 ± 60 s:
    the planner alone would first poll them when 5 % likely done (about 32 s in); the queue
    watch (``current_queue`` fell below the two held) has them polled within seconds."""
    emu = make_emulator(premium=True, processing_s=1.0, rate_limit_per_min=60)
    with rig(tmp_path, emu, max_parallel_jobs=2) as r:
        r.engine = Engine(
            journal=r.journal,
            client=r.client,
            settings=r.settings,
            poll_policy=PollPolicy(),
            estimator=DurationEstimator(prior_s=120.0, prior_ratio=None),
            on_progress=r.recorder,
        )
        first = r.submit(audio_file("in/a.wav", seconds=1.0))
        second = r.submit(audio_file("in/b.wav", seconds=1.5))  # other audio: no duplicate
        r.submit(audio_file("in/c.wav", seconds=2.0))  # waits for a slot
        r.engine.start()
        for job_id in (first, second):
            r.wait_state(job_id, JobState.DOWNLOADING, JobState.FILED, timeout_s=60)
        times = {t.hash: t for t in emu.state.job_times()}
        for job_id in (first, second):
            job = r.job(job_id)
            assert job.mvsep_hash is not None
            seen = [g.at for g in emu.state.get_records() if g.hash == job.mvsep_hash]
            created = times[job.mvsep_hash].created
            assert seen and seen[-1] - created < 10.0, seen[-1] - created
        calls = emu.stats["calls"]
        assert isinstance(calls, dict) and calls.get("user", 0) >= 1  # the watch read it


def test_a_fresh_reading_with_none_done_marks_its_jobs_running() -> None:
    reading = Reading(jobs=frozenset({1, 2}), unfinished=2, sent_at=10.0)
    live, none = frozenset({1, 2, 3}), frozenset()
    assert known_running(reading, live, none, 10.5, fresh_s=2.5) == frozenset({1, 2})
    assert known_running(reading, live, frozenset({2}), 10.5, fresh_s=2.5) == frozenset({1})
    assert known_running(reading, live, none, 13.0, fresh_s=2.5) == frozenset()  # stale
    some_done = Reading(jobs=frozenset({1, 2}), unfinished=1, sent_at=10.0)
    assert known_running(some_done, live, none, 10.5, fresh_s=2.5) == frozenset()


def test_a_count_above_our_jobs_shows_none_of_them_running() -> None:
    """Three unfinished for our two: a job not ours (another client on the token, a create
    answered after the read) is in the count, and it may stand in for one of ours done."""
    crowded = Reading(jobs=frozenset({1, 2}), unfinished=3, sent_at=10.0)
    live = frozenset({1, 2})
    assert known_running(crowded, live, frozenset(), 10.5, fresh_s=2.5) == frozenset()
    assert done_hint(crowded, live, frozenset()) == (0, frozenset({1, 2}))


def test_the_watch_reads_no_faster_than_its_route_allows() -> None:
    """At 60 a minute on the account route, 0.75 s between reads would spend the window in
    45 s and then wait at the pacer with no reading: the gap follows the route's limit."""
    stopping = threading.Event()
    watch = QueueWatch(read=lambda: 0, held=lambda: None, on_reading=lambda r: None,
                       stopping=stopping, interval_s=0.75, clock=lambda: 0.0,
                       least_gap_s=lambda: 60.0 / 56)  # fmt: skip
    assert watch.gap_s() == 60.0 / 56
    fast = QueueWatch(read=lambda: 0, held=lambda: None, on_reading=lambda r: None,
                      stopping=stopping, interval_s=0.75, clock=lambda: 0.0,
                      least_gap_s=lambda: 60.0 / 116)  # fmt: skip
    assert fast.gap_s() == 0.75


def test_a_read_that_cannot_be_made_ends_the_watch_quietly() -> None:
    """A closed client (the engine stopping under it) raises RuntimeError: the thread ends
    without an unhandled exception and is not started again."""
    stopping = threading.Event()
    calls: list[int] = []

    def read() -> int | None:
        calls.append(1)
        raise RuntimeError("Cannot send a request, as the client has been closed.")

    watch = QueueWatch(
        read=read,
        held=lambda: frozenset({1, 2}),
        on_reading=lambda reading: None,
        stopping=stopping,
        interval_s=0.01,
        clock=lambda: 0.0,
    )
    watch.want()
    wait_until(lambda: watch._thread is None and calls == [1], "the watch to end", 10)
    watch.want()
    assert watch._thread is None
    stopping.set()


def test_the_watch_reads_only_where_a_read_can_save_gets() -> None:
    """Jobs waiting for a slot and two or more held with uncertain ends: worth a read. Ends
    known to a second (300 jobs of 2 s: 310 reads saved no get), one job held, or no
    backlog: not."""
    assert worth_watching(3, [10.0, 8.0])
    assert worth_watching(3, [None, None])  # nothing learnt yet: uncertain
    assert not worth_watching(3, [0.1, 0.1, 0.2])
    assert not worth_watching(3, [10.0])
    assert not worth_watching(0, [10.0, 10.0])
