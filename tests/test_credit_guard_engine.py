"""The credit guard through the engine (issue 11, "Credit guard"): a real emulator over
loopback, the real client, journal and engine, real WAV files, and an injected clock.

The clock is the real one moved by the test (:class:`JumpClock`): the engine's polls and
backoffs need time to pass, and a day must pass in an instant. It starts at local noon, so
no real midnight falls inside a test. The emulator's account record is changed in place to
"buy" credits.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from daemon_harness import wait_until
from test_engine_rig import FAST, FAST_POLLS, REQUEST, Recorder

from daemon.catalogue import builtin_catalogue
from daemon.engine import Engine
from daemon.engine.credit_guard import CREDITS, DAY
from daemon.jobs import JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer
from daemon.service import to_request
from daemon.status import job_lines, summaries

TOKEN = "credit-token"
_PRESET = builtin_catalogue().resolve(
    sep_type=40, options={"Overlap": "87.5%"}, output_format="mp3", premium=True, where="t"
)
OVERLAP_87 = to_request(_PRESET)  # its price_rules multiplier: ×2.0


class JumpClock:
    """Real time plus an offset the test moves (:meth:`jump`): ``monotonic()`` and ``time()``
    move together, as :class:`~daemon.clock.ManualClock`'s do, but also by themselves."""

    def __init__(self, start_wall: float) -> None:
        self._lock = threading.Lock()
        self._wall_offset = start_wall - time.time()
        self._jumped = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._jumped

    def time(self) -> float:
        with self._lock:
            return time.time() + self._wall_offset + self._jumped

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._jumped += seconds


def _local_noon() -> float:
    today = dt.date.today()
    return dt.datetime.combine(today, dt.time(12)).timestamp()


@dataclass
class Bench:
    tmp: Path
    clock: JumpClock
    journal: Journal
    engine: Engine
    recorder: Recorder

    def submit(self, path: Path, request: JobRequest = REQUEST) -> int:
        source = SourceFile(
            path=path,
            inbox="main",
            relative_path=path.name,
            preset="vocals",
            request=request,
            output_dir=self.tmp / "out",
            output_template="{name}/{stem}.{ext}",
            failed_dir=self.tmp / "in" / "_failed",
            after_success="keep",
        )
        job_id = self.engine.submit_file(source)
        assert job_id is not None
        return job_id

    def state(self, job_id: int, *states: JobState) -> None:
        wait_until(lambda: self.journal.get(job_id).state in states, f"job {job_id} {states}")

    def charged(self, job_id: int) -> float | None:
        """The job's credits, once the history read after its filing gave them."""
        wait_until(lambda: self.journal.get(job_id).used_credits is not None, "its credits")
        return self.journal.get(job_id).used_credits

    def kinds(self, job_id: int) -> list[str]:
        return [e.kind for e in self.journal.events(job_id)]


@contextmanager
def bench(tmp: Path, emu: Any, **settings: Any) -> Iterator[Bench]:
    clock = JumpClock(_local_noon())
    journal = Journal(tmp / "state" / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url=emu.base_url, api_token=TOKEN, gate=Pacer(limit=600),
                         max_attempts=3, retry_timeout_s=5, read_timeout_s=10)  # fmt: skip
    recorder = Recorder()
    recorder.journal = journal
    engine = Engine(journal=journal, client=client, clock=clock, rng=random.Random(3),
                    settings=replace(FAST, credits_read_every_s=0.2, **settings),
                    poll_policy=FAST_POLLS,
                    on_progress=recorder)  # fmt: skip
    (tmp / "out").mkdir(exist_ok=True)
    try:
        yield Bench(tmp, clock, journal, engine, recorder)
    finally:
        engine.stop(timeout_s=10)
        journal.close()
        client.close()


def _seconds_to_next_local_day(now: float) -> float:
    tomorrow = dt.datetime.fromtimestamp(now).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0, 0, 5)).timestamp() - now


def test_a_job_over_the_days_limit_is_held_then_sent_the_next_day(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, premium_minutes=1000.0)
    first = audio_file("in/one.wav", seconds=150.0, sample_rate=8000, channels=1)
    second = audio_file("in/two.wav", seconds=150.0, sample_rate=8000, channels=1)
    with bench(tmp_path, emu, max_credits_per_day=5.0) as b:
        b.engine.start()
        assert OVERLAP_87.price_multiplier == 2.0
        one = b.submit(first, OVERLAP_87)  # floor(2.5 min × 1 × 2.0) = 5: the whole day's
        b.state(one, JobState.FILED)
        two = b.submit(second)  # ~2 more: over the limit
        b.state(two, JobState.HELD)
        done = b.journal.get(one)
        assert done.estimated_credits == 5.0 and b.charged(one) == 5.0  # charged = estimate
        held = b.journal.get(two)
        assert held.last_error is not None and held.last_error.startswith(f"{DAY}:")
        assert "goes on tomorrow" in held.last_error and held.attempts == 0
        assert len(emu.jobs) == 1  # nothing sent for the held job
        summary = summaries(b.journal, [held])[0]
        assert summary["held"] == held.last_error and summary["estimated_credits"] == 2.0
        assert any(line.strip() == f"held: {held.last_error}" for line in job_lines(summary))
        b.clock.jump(_seconds_to_next_local_day(b.clock.time()))  # a new local day
        b.engine.wake()
        b.state(two, JobState.FILED)
        assert len(emu.jobs) == 2 and b.charged(two) == 2.0
        kinds = b.kinds(two)
        assert kinds.index("held") < kinds.index("released") < kinds.index("submit_intent")
        assert "failed" not in kinds and "deferred" not in kinds


def test_a_job_that_would_leave_too_few_credits_waits_for_credits_bought(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, premium_minutes=10.0)
    song = audio_file("in/song.wav", seconds=180.0, sample_rate=8000, channels=1)  # ~3 credits
    with bench(tmp_path, emu, keep_credits_at_least=8.0, max_parallel_jobs=2,
               held_recheck_s=0.2) as b:  # fmt: skip
        b.engine.start()  # max_parallel_jobs set: the guard asks for the account reads itself
        job_id = b.submit(song)
        b.state(job_id, JobState.HELD)
        wait_until(lambda: "10 credits left" in (b.journal.get(job_id).last_error or ""),
                   "the hold to name the credits left")  # fmt: skip
        reason = b.journal.get(job_id).last_error or ""
        assert reason.startswith(f"{CREDITS}:") and "credits bought" in reason
        reads = emu.stats["calls"].get("user", 0)
        wait_until(lambda: emu.stats["calls"].get("user", 0) >= reads + 2, "the account re-read")
        assert len(emu.jobs) == 0 and b.journal.get(job_id).state is JobState.HELD
        with emu.state.lock:
            emu.state.accounts[TOKEN].premium_minutes = 100.0  # credits bought
        b.state(job_id, JobState.FILED)
        assert len(emu.jobs) == 1 and b.charged(job_id) == 3.0
        assert "failed" not in b.kinds(job_id)


def test_a_free_account_is_never_held(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=False)
    song = audio_file("in/song.wav", seconds=30.0, sample_rate=8000, channels=1)
    with bench(tmp_path, emu, max_credits_per_day=0.0, keep_credits_at_least=1000.0) as b:
        b.engine.start()
        job_id = b.submit(song)
        b.state(job_id, JobState.FILED)
        assert "held" not in b.kinds(job_id) and len(emu.jobs) == 1
