"""The poll planner inside the engine: real emulator on loopback, real journal, real pacer."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_engine_rig import FAST, FAST_POLLS, REQUEST, Recorder

from daemon.engine import Engine
from daemon.jobs import JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer
from daemon.polling import DurationEstimator


def test_the_engine_learns_processing_time_per_input_second(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Each filed job feeds the estimator its duration with its input's duration, so a
    kind seen once predicts an input twice as long to take twice as long; the expectation
    lies within what the polls bracketed (created -> seen done)."""
    emu = make_emulator(processing_s=0.4)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    client = MvsepClient(
        base_url=emu.base_url, api_token="test-token", gate=Pacer(limit=600), max_attempts=3
    )
    recorder = Recorder()
    recorder.journal = journal
    estimator = DurationEstimator()
    engine = Engine(
        journal=journal,
        client=client,
        rng=random.Random(3),
        settings=FAST,
        poll_policy=FAST_POLLS,
        estimator=estimator,
        on_progress=recorder,
    )
    inbox, out = tmp_path / "in", tmp_path / "out"
    out.mkdir()
    song = audio_file("in/song.wav", seconds=2.0)
    source = SourceFile(
        path=song,
        inbox="main",
        relative_path="song.wav",
        preset="vocals",
        request=REQUEST,
        output_dir=out,
        output_template="{name} - {stem}.{ext}",
        failed_dir=inbox / "_failed",
        after_success="keep",
    )
    try:
        job_id = engine.submit_file(source)
        assert job_id is not None
        assert engine.run_until_idle(30)
        job = journal.get(job_id)
        assert job.state is JobState.FILED, job.last_error
        per_2s = estimator.expected(REQUEST.sep_type, input_s=2.0)
        per_4s = estimator.expected(REQUEST.sep_type, input_s=4.0)
        assert per_2s is not None and per_4s is not None
        assert per_4s == pytest.approx(2 * per_2s)
        assert 0.0 < per_2s < 10.0  # the emulator's 0.4 s plus polling, not the 1-s prior
        assert per_2s != pytest.approx(DurationEstimator().expected(48, input_s=2.0))
        assert emu.stats["calls"]["get"] <= 10  # planned polls, not a busy loop
    finally:
        engine.stop(timeout_s=10)
        journal.close()
        client.close()
