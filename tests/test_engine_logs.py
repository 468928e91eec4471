"""What a user reads in the log (issue 8): failures at WARNING, errors at ERROR, one meaning
per key (``reason`` a reason, paths in ``path``), every job line with ``job_id`` and
``file``. The real engine against the emulator with injected faults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from test_engine_rig import rig

from daemon.emulator import Fault
from daemon.jobs import JobState

_MINE = {
    "job ended as failed",
    "input moved to the failed folder",
    "input archived",
    "download or filing failed; trying again later",
    "input could not be read; trying again later",
    "same audio already filed: nothing new filed",
    "credits unknown: the history could not be read",
}


def _check_keys(logs: list[dict[str, Any]]) -> None:
    for entry in logs:
        if entry["event"] in _MINE:
            assert "job_id" in entry and "file" in entry, entry
            assert "dest" not in entry and "src" not in entry, entry
            assert not str(entry.get("reason", "")).startswith("/"), entry


def test_a_failure_is_a_warning_and_the_move_names_its_path(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        bogus = r.inbox / "notes.wav"
        bogus.write_text("this is not audio\n" * 20)
        with capture_logs() as logs:
            job_id = r.submit(bogus)
            assert r.engine.run_until_idle(20)
        assert r.job(job_id).state is JobState.FAILED
    failed = [e for e in logs if e["event"] == "job ended as failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "warning"
    assert failed[0]["reason"].startswith("not an audio file")
    moved = [e for e in logs if e["event"] == "input moved to the failed folder"]
    assert moved and moved[0]["path"] == str(r.inbox / "_failed" / "notes.wav")
    _check_keys(logs)


def test_a_download_that_fails_for_a_while_warns_then_files_and_lists_the_stems(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    # the client tries 3 times per call: 3 faults make one failed try of the engine
    emu.add_fault(Fault(kind="http_5xx", endpoint="download", status=503, times=3))
    with rig(tmp_path, emu) as r:
        song = audio_file("in/song.wav", seconds=0.5)
        with capture_logs() as logs:
            job_id = r.submit(song, after_success="archive")
            assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is JobState.FILED and job.outputs
    warned = [e for e in logs if e["event"] == "download or filing failed; trying again later"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["attempt"] == 1 and "503" in warned[0]["error"]
    filed = [e for e in logs if e["event"] == "job filed"]
    assert filed and filed[0]["path"] == list(job.outputs)
    archived = [e for e in logs if e["event"] == "input archived"]
    assert archived and archived[0]["path"] == str(r.inbox / "_processed" / "song.wav")
    _check_keys(logs)


def test_history_unreadable_leaves_credits_unknown_with_a_warning(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    emu.add_fault(Fault(kind="http_5xx", endpoint="history", status=400, times=None))
    with rig(tmp_path, emu) as r:
        with capture_logs() as logs:
            job_id = r.submit(audio_file("in/c.wav", seconds=0.5))
            assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is JobState.FILED and job.used_credits is None
    unknown = [e for e in logs if e["event"] == "credits unknown: the history could not be read"]
    assert len(unknown) == 1 and unknown[0]["log_level"] == "warning"
    _check_keys(logs)
