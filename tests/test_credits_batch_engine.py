"""Batched credit reads through the engine (issue 12: 300 files must not cost a history call
each): a real emulator over loopback, the real client, journal and engine, real WAV files.
The emulator's call log (``stats["calls"]``) counts the history reads.

The clock is the real one moved by the test (``JumpClock``): the read timer's interval is
set long, so no read happens until the test jumps past it, and then exactly when it does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from daemon_harness import wait_until
from structlog.testing import capture_logs
from test_credit_guard_engine import JumpClock
from test_engine_rig import FAST, FAST_POLLS, REQUEST, Recorder

from daemon.emulator import Fault
from daemon.engine import Engine
from daemon.engine.credits import MAX_LOOKS
from daemon.jobs import Job, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer
from daemon.status import summaries

TOKEN = "credits-token"
LONG_S = 60.0  # the read interval of most tests: longer than any test waits on its own
FAILED = "credits unknown: the history could not be read"
GIVEN_UP = "credits unknown: not found in the history"


@dataclass
class CreditRig:
    tmp: Path
    emu: Any
    clock: JumpClock
    client: MvsepClient
    journal: Journal
    engine: Engine

    def submit(self, path: Path) -> int:
        source = SourceFile(
            path=path,
            inbox="main",
            relative_path=path.name,
            preset="vocals",
            request=REQUEST,
            output_dir=self.tmp / "out",
            output_template="{name}/{stem}.{ext}",
            failed_dir=self.tmp / "in" / "_failed",
            after_success="keep",
        )
        job_id = self.engine.submit_file(source)
        assert job_id is not None
        return job_id

    def filed(self, ids: list[int]) -> list[Job]:
        wait_until(lambda: all(self.journal.get(i).state is JobState.FILED for i in ids),
                   f"{len(ids)} jobs filed")  # fmt: skip
        return [self.journal.get(i) for i in ids]

    def charged(self, ids: list[int]) -> list[Job]:
        wait_until(lambda: all(self.journal.get(i).used_credits is not None for i in ids),
                   f"the credits of {len(ids)} jobs")  # fmt: skip
        return [self.journal.get(i) for i in ids]

    def reads(self) -> int:
        calls: dict[str, int] = self.emu.stats["calls"]
        return calls.get("history", 0)

    def jump(self, seconds: float) -> None:
        self.clock.jump(seconds)
        self.engine.wake()

    def restart(self, **settings: Any) -> None:
        """Stop the engine, close the journal, open both again (a daemon restart)."""
        self.engine.stop(timeout_s=10)
        self.journal.close()
        self.journal, self.engine = _open(self.tmp, self.clock, self.client, settings)


def _open(
    tmp: Path, clock: JumpClock, client: MvsepClient, settings: dict[str, Any]
) -> tuple[Journal, Engine]:
    journal = Journal(tmp / "state" / "journal.sqlite3", clock=clock)
    recorder = Recorder()
    recorder.journal = journal
    conf = replace(FAST, **{"credits_read_every_s": LONG_S, **settings})
    engine = Engine(journal=journal, client=client, clock=clock, rng=random.Random(5),
                    settings=conf, poll_policy=FAST_POLLS, on_progress=recorder)  # fmt: skip
    return journal, engine


@contextmanager
def credit_rig(tmp: Path, emu: Any, **settings: Any) -> Iterator[CreditRig]:
    clock = JumpClock(1_800_000_000.0)
    client = MvsepClient(base_url=emu.base_url, api_token=TOKEN, gate=Pacer(limit=600),
                         max_attempts=2, retry_timeout_s=5, read_timeout_s=10)  # fmt: skip
    journal, engine = _open(tmp, clock, client, settings)
    (tmp / "out").mkdir(exist_ok=True)
    r = CreditRig(tmp, emu, clock, client, journal, engine)
    try:
        yield r
    finally:
        r.engine.stop(timeout_s=10)
        r.journal.close()
        client.close()


def _songs(audio_file: Callable[..., Path], count: int) -> list[Path]:
    """``count`` distinct short WAVs (lengths differ: no two are the same audio)."""
    return [
        audio_file(f"in/s{i:02}.wav", seconds=0.2 + 0.01 * i, sample_rate=8000, channels=1)
        for i in range(count)
    ]


def test_thirty_filed_jobs_cost_at_most_three_history_reads(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, rate_limit=False)
    with credit_rig(tmp_path, emu) as r:
        r.engine.start()
        ids = [r.submit(song) for song in _songs(audio_file, 30)]
        r.filed(ids)
        assert r.reads() == 0  # filing never waited for a read
        r.jump(LONG_S)  # the oldest has waited the interval: one read for all thirty
        jobs = r.charged(ids)
        assert r.reads() <= 3
        for job in jobs:
            assert job.mvsep_hash is not None
            assert job.used_credits == emu.jobs[job.mvsep_hash].credits
            assert [e.kind for e in r.journal.events(job.id)].count("credits") == 1
        assert r.engine.run_until_idle(10)  # the final settle: nothing left to read
        assert r.reads() <= 3


def test_a_job_missing_from_the_history_is_given_up_after_the_bound(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, rate_limit=False)
    with credit_rig(tmp_path, emu) as r:
        r.engine.start()
        (job,) = r.filed([r.submit(_songs(audio_file, 1)[0])])
        with emu.state.lock:  # MVSEP no longer lists it
            del emu.state.jobs[job.mvsep_hash]
        with capture_logs() as logs:
            for look in range(1, MAX_LOOKS + 1):
                r.jump(LONG_S)
                wait_until(lambda n=look: r.reads() == n, f"history read {look}")  # type: ignore[misc]
            wait_until(lambda: any(e["event"] == GIVEN_UP for e in logs), "the job given up")
            r.jump(LONG_S)
            assert r.engine.run_until_idle(10)  # the final settle: nothing wanted any more
        assert r.reads() == MAX_LOOKS
        given_up = [e for e in logs if e["event"] == GIVEN_UP]
        assert len(given_up) == 1 and given_up[0]["job_id"] == job.id
        assert given_up[0]["file"] == str(job.source.path)
        assert r.journal.get(job.id).used_credits is None
        assert summaries(r.journal, [r.journal.get(job.id)])[0]["credits"] is None


def test_a_restart_reads_the_credits_the_last_run_never_read(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, rate_limit=False)
    with credit_rig(tmp_path, emu) as r:
        r.engine.start()
        ids = [r.submit(song) for song in _songs(audio_file, 4)]
        r.filed(ids)
        assert r.reads() == 0
        r.restart(credits_read_every_s=0.1)  # stopped before its read: nothing in memory
        r.engine.start()
        jobs = r.charged(ids)
        assert r.reads() == 1
        assert all(j.used_credits == emu.jobs[j.mvsep_hash or ""].credits for j in jobs)


def test_an_unreadable_history_files_everything_warns_once_then_reads_when_back(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, rate_limit=False)
    emu.add_fault(Fault(kind="http_5xx", endpoint="history", status=503, times=None))
    with credit_rig(tmp_path, emu) as r:
        ids = [r.submit(song) for song in _songs(audio_file, 5)]
        with capture_logs() as logs:
            assert r.engine.run_until_idle(60)  # its final read fails
            assert r.engine.run_until_idle(10)  # and again
        jobs = [r.journal.get(i) for i in ids]
        assert all(j.state is JobState.FILED and j.used_credits is None for j in jobs)
        assert r.reads() >= 2
        warned = [e for e in logs if e["event"] == FAILED]
        assert len(warned) == 1 and warned[0]["log_level"] == "warning"
        assert "503" in warned[0]["error"] and sorted(warned[0]["job_id"]) == sorted(ids)
        emu.clear_faults()
        assert r.engine.run_until_idle(10)
        assert all(j.used_credits is not None for j in r.charged(ids))
