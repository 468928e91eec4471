"""``daemon.engine.poll``'s look in the account history (is a result really gone?) and its
cancel of a waiting job, on a real client against the emulator and a real journal."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import media
from daemon.clock import ManualClock
from daemon.emulator import Fault
from daemon.engine import EngineSettings, poll
from daemon.engine.context import Context
from daemon.jobs import Job
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.mvsep.models import HistoryEntry
from tests.test_jobs import SOURCE


@pytest.fixture
def emu(make_emulator: Callable[..., Any]) -> Any:
    return make_emulator(premium=True, rate_limit=False, processing_s=30.0, parallel_limit=100)


@pytest.fixture
def ctx(tmp_path: Path, emu: Any) -> Iterator[Context]:
    clock = ManualClock()
    journal = Journal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url=emu.base_url, api_token="history-token", max_attempts=1)
    settings = EngineSettings(history_max_pages=3)
    context = Context(journal=journal, client=client, settings=settings, clock=clock,
                      rng=random.Random(1), staging_dir=tmp_path / "staging",
                      probe=media.probe)  # fmt: skip
    try:
        yield context
    finally:
        journal.close()
        client.close()


def at_mvsep(ctx: Context, song: Path, name: str = "song.wav") -> Job:
    created = ctx.client.create(sep_type=40, output_format=1, file=song, upload_name=name)
    now = time.time()
    return Job(id=1, source=SOURCE, size=1, mtime=1.0, created_at=now, updated_at=now,
               mvsep_hash=created.hash)  # fmt: skip


def test_a_result_listed_as_alive_is_not_gone(
    ctx: Context, audio_file: Callable[..., Path]
) -> None:
    job = at_mvsep(ctx, audio_file("in/a.wav", seconds=0.3))
    entry, complete = poll.find_by_hash(ctx, job)
    assert entry is not None and entry.hash == job.mvsep_hash and complete
    assert not poll.history_says_gone(ctx, job)


def test_a_hash_the_complete_history_never_lists_is_gone(
    ctx: Context, audio_file: Callable[..., Path]
) -> None:
    job = at_mvsep(ctx, audio_file("in/a.wav", seconds=0.3))
    unknown = dataclasses.replace(job, mvsep_hash="20261202000000-0000000000-gone.wav")
    assert poll.find_by_hash(ctx, unknown) == (None, True)
    assert poll.history_says_gone(ctx, unknown)


def test_a_search_cut_short_or_an_unreadable_history_proves_nothing(
    ctx: Context, emu: Any, audio_file: Callable[..., Path]
) -> None:
    song = audio_file("in/a.wav", seconds=0.2)
    first = at_mvsep(ctx, song, "first.wav")
    for n in range(3 * 20):  # three full pages of newer jobs: past history_max_pages
        ctx.client.create(sep_type=40, output_format=1, file=song, upload_name=f"n{n}.wav")
    unknown = dataclasses.replace(first, mvsep_hash="20261202000000-0000000000-gone.wav")
    assert poll.find_by_hash(ctx, unknown) == (None, False)
    assert not poll.history_says_gone(ctx, unknown)
    emu.add_fault(Fault(kind="http_5xx", endpoint="history", status=503, times=None))
    assert not poll.history_says_gone(ctx, first)


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [("2026-12-02 07:00:00", 1796194800.0), ("", None), ("yesterday", None)],
)
def test_history_times_are_read_as_utc(created_at: str, expected: float | None) -> None:
    entry = HistoryEntry(hash="h", job_exists=True, created_at=created_at)
    assert poll._entry_time(entry) == expected


def test_a_waiting_job_whose_cancel_fails_for_now_stays_queued(
    ctx: Context, emu: Any, audio_file: Callable[..., Path]
) -> None:
    job = at_mvsep(ctx, audio_file("in/a.wav", seconds=0.3))
    job = dataclasses.replace(job, cancel_requested="removed")
    status = ctx.client.get(job.mvsep_hash or "")
    waiting = status.model_copy(update={"status": "waiting"})
    emu.add_fault(Fault(kind="http_5xx", endpoint="cancel", status=503, times=None))
    assert poll.cancel_at_mvsep(ctx, job, waiting)  # tried again later, not given up
