"""The whole daemon (watcher, journal, engine, client) when files or inboxes go away.

- A file deleted while its job waits at MVSEP is cancelled there (credits refunded); a file
  deleted before it was sent costs nothing.
- An inbox whose folder vanishes (an unmounted NAS share) is paused, not read as empty: its
  job at MVSEP is neither cancelled nor forgotten, and is filed once the share is back; a
  job not yet sent waits for the share instead of being cancelled as "removed".

Real parts throughout: watchdog observers on temp folders, a SQLite journal, the emulator
over loopback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until, write_config

from daemon.config import load_settings
from daemon.jobs import Job, JobState
from daemon.service import Daemon


def start_daemon(tmp: Path, base_url: str, **engine: Any) -> Daemon:
    path = write_config(tmp, base_url, engine=engine)
    settings, _ = load_settings(path, env={})
    daemon = Daemon(settings, config_label=str(path))
    daemon.start()
    return daemon


def jobs_by_name(daemon: Daemon) -> dict[str, Job]:
    assert daemon.journal is not None
    return {j.source.path.name: j for j in daemon.journal.recent_jobs(100)}


def test_removed_files_are_cancelled_at_mvsep_or_cost_nothing(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    # a free account (one slot) whose first job waits at MVSEP: the second file is journaled
    # and prepared but cannot be sent while the first holds the slot
    emulator = make_emulator(premium=False, waiting_s=60.0)
    daemons.append(daemon := start_daemon(tmp_path, emulator.base_url))
    first = audio_file("in/first.wav", seconds=1.0)
    wait_until(lambda: len(emulator.jobs) == 1, "the first create")
    # other audio than the first: the same audio would rightly wait for the first's result
    second = audio_file("in/second.wav", seconds=1.5)
    wait_until(
        lambda: (
            "second.wav" in jobs_by_name(daemon)
            and jobs_by_name(daemon)["first.wav"].mvsep_status == "waiting"
        ),
        "the second file journaled while the first waits at MVSEP",
    )
    assert jobs_by_name(daemon)["second.wav"].state is JobState.READY

    os.remove(second)
    os.remove(first)

    wait_until(
        lambda: all(j.state is JobState.CANCELLED for j in jobs_by_name(daemon).values()),
        "both jobs cancelled",
    )
    jobs = jobs_by_name(daemon)
    assert "cancelled at MVSEP" in (jobs["first.wav"].last_error or "")
    assert emulator.stats["cancels"] == 1
    (only,) = emulator.jobs.values()
    assert only.state == "cancelled" and "first.wav" in only.upload_name
    assert len(emulator.jobs) == 1  # the second file was never sent: it cost nothing
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.wav"))


def test_unmounted_inbox_pauses_and_its_job_is_filed_when_it_is_back(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True, waiting_s=3.0, processing_s=0.5)
    # the output lives outside the inbox, as on a NAS whose share holds only the inbox
    daemons.append(daemon := start_daemon(tmp_path, emulator.base_url))
    audio_file("in/song.wav", seconds=1.0)
    wait_until(lambda: len(emulator.jobs) == 1, "the create")
    inbox, parked = tmp_path / "in", tmp_path / "unmounted"

    os.rename(inbox, parked)  # the share goes away, the file with it
    assert daemon.watcher is not None
    wait_until(lambda: daemon.watcher is not None and daemon.watcher.paused() != [], "pause")

    # the job is neither cancelled nor forgotten: MVSEP finishes it and it waits to be filed
    (job,) = jobs_by_name(daemon).values()
    assert job.state in (JobState.QUEUED, JobState.DOWNLOADING, JobState.FILED), job.state
    assert emulator.stats["cancels"] == 0

    os.rename(parked, inbox)  # the share is back
    wait_until(lambda: daemon.watcher is not None and daemon.watcher.paused() == [], "resume")
    wait_until(lambda: jobs_by_name(daemon)["song.wav"].state is JobState.FILED, "the job filed")
    assert emulator.stats["cancels"] == 0 and len(emulator.jobs) == 1
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 2
    assert (inbox / "song.wav").exists()  # after_success = keep


def test_job_not_yet_sent_waits_for_an_unmounted_inbox(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    # a free account: the first job holds the only slot for a few seconds, so the second is
    # journaled but not yet sent when the share goes away
    emulator = make_emulator(premium=False, waiting_s=2.0, processing_s=0.5)
    daemons.append(daemon := start_daemon(tmp_path, emulator.base_url, missing_inbox_recheck_s=0.3))
    audio_file("in/first.wav", seconds=1.0)
    wait_until(lambda: len(emulator.jobs) == 1, "the first create")
    audio_file("in/second.wav", seconds=1.2)  # other content: not a duplicate of the first
    wait_until(lambda: "second.wav" in jobs_by_name(daemon), "the second file journaled")
    inbox, parked = tmp_path / "in", tmp_path / "unmounted"

    os.rename(inbox, parked)
    # the first job's slot frees while the share is away: the second is not sent (its file
    # is unreachable), nor cancelled as "removed", nor failed
    wait_until(lambda: jobs_by_name(daemon)["first.wav"].state is JobState.FILED, "first filed")
    second = jobs_by_name(daemon)["second.wav"]
    assert second.state in (JobState.READY, JobState.RETRY_WAIT), (second.state, second.last_error)
    assert len(emulator.jobs) == 1  # nothing sent while the share is away

    os.rename(parked, inbox)
    wait_until(lambda: jobs_by_name(daemon)["second.wav"].state is JobState.FILED, "second filed")
    assert len(emulator.jobs) == 2 and emulator.stats["cancels"] == 0
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 4


def test_unmounted_output_share_waits_instead_of_filing_into_the_mount_point(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True, waiting_s=1.5, processing_s=0.3)
    stems, away = tmp_path / "nas" / "stems", tmp_path / "nas" / "stems-unmounted"
    path = write_config(tmp_path, emulator.base_url, engine={"missing_inbox_recheck_s": 0.3},
                        output=str(stems))  # fmt: skip
    settings, _ = load_settings(path, env={})
    daemons.append(daemon := Daemon(settings, config_label=str(path)))
    daemon.start()
    assert stems.is_dir()  # created at start

    audio_file("in/song.wav", seconds=1.0)
    wait_until(lambda: len(emulator.jobs) == 1, "the create")
    os.rename(stems, away)  # the output share goes away while the job runs at MVSEP
    wait_until(
        lambda: "output folder" in (jobs_by_name(daemon)["song.wav"].last_error or ""),
        "the job to wait for its output folder",
    )
    assert not jobs_by_name(daemon)["song.wav"].state.is_terminal
    assert not stems.exists()  # no stray tree in the bare mount point

    os.rename(away, stems)
    wait_until(lambda: jobs_by_name(daemon)["song.wav"].state is JobState.FILED, "filed")
    assert len(list(stems.rglob("*.wav"))) == 2
    assert len(emulator.jobs) == 1
