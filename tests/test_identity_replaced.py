"""Issue 9 item 1: a file replaced at the same path after its job was sent.

``s2.wav`` (A) is sent; while A is at MVSEP the user puts different audio (C) at the same
path. A's job files A's stems and leaves C alone (it disposes of the file it SENT, checked
by identity, never "whatever is at that path now"); C is its own job, filed too, and archived
only after its own stems. Nothing is cancelled. The whole daemon: watchdog on a temp inbox,
the SQLite journal, the emulator over loopback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until, write_config

from daemon.config import load_settings
from daemon.emulator.audio import write_test_audio
from daemon.jobs import Job, JobState
from daemon.service import Daemon


def _jobs(daemon: Daemon) -> list[Job]:
    assert daemon.journal is not None
    return sorted(daemon.journal.recent_jobs(100), key=lambda j: j.id)


def test_replaced_file_is_its_own_job_and_the_first_job_leaves_it_alone(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True, waiting_s=2.0, processing_s=0.3)
    config = write_config(tmp_path, emulator.base_url, after_success="archive")
    settings, _ = load_settings(config, env={})
    daemons.append(daemon := Daemon(settings, config_label=str(config)))
    daemon.start()

    song = audio_file("in/s2.wav", seconds=1.0)  # A
    a_bytes = song.read_bytes()
    wait_until(lambda: len(emulator.jobs) == 1, "A created at MVSEP")

    other = tmp_path / "c.wav"  # C: different audio, put over A atomically
    write_test_audio(other, 1.6, sample_rate=22050)
    c_bytes = other.read_bytes()
    assert c_bytes != a_bytes
    os.replace(other, song)

    wait_until(
        lambda: (
            len(_jobs(daemon)) == 2
            and all(j.state is JobState.FILED and j.source_disposed for j in _jobs(daemon))
        ),
        "both jobs filed and disposed",
    )
    job_a, job_c = _jobs(daemon)
    # two paid jobs, neither cancelled
    assert emulator.stats["creates_accepted"] == 2 and len(emulator.jobs) == 2
    assert emulator.stats["cancels"] == 0
    assert {j.state for j in emulator.jobs.values()} == {"done"}
    assert job_a.source.path == job_c.source.path == song

    stems_a = [Path(p).read_bytes() for p in job_a.outputs]
    stems_c = [Path(p).read_bytes() for p in job_c.outputs]
    assert len(stems_a) == len(stems_c) == 2
    assert stems_a != stems_c  # each job filed its own audio's stems

    # A's job did not touch C; C was archived by its own job, after its stems were filed
    assert not (job_a.source_disposed or "").startswith("archived:")
    assert (job_c.source_disposed or "").startswith("archived:")
    archived = Path((job_c.source_disposed or "").removeprefix("archived:"))
    assert archived.read_bytes() == c_bytes
    assert not song.exists()
    assert daemon.journal is not None
    kinds = [e.kind for e in daemon.journal.events(job_c.id)]
    assert kinds.index("filed") < kinds.index("source_disposed")
