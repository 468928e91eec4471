"""Defect 6: the same audio dropped again (same preset, dedup on). If the earlier job's stems
are still where they were filed, nothing new is filed (no byte-identical ``(2)`` copies)
and the log and ``status`` say where they are; a sidecar is never overwritten. Real
emulator, real files, real journal."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from test_engine_rig import Rig, rig

from daemon.config import load_settings
from daemon.jobs import JobState
from daemon.status import print_status


def _drop_again(r: Rig, original: Path) -> Path:
    """The user drops the same file again (the first one was archived)."""
    archived = r.inbox / "_processed" / original.name
    shutil.copyfile(archived, original)
    return original


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _status_text(r: Rig) -> str:
    config = r.tmp / "config.toml"
    config.write_text(
        f'[mvsep]\napi_token = "t"\n[journal]\npath = "{r.journal.path}"\n', encoding="utf-8"
    )
    out = io.StringIO()
    print_status(load_settings(config, env={})[0], out=out)
    return out.getvalue()


def test_stems_still_in_place_file_nothing_new_and_say_where(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        song = audio_file("in/song.wav", seconds=0.5)
        first = r.submit(song, after_success="archive")
        assert r.engine.run_until_idle(20)
        before = {p: p.read_bytes() for p in _files(r.out)}
        sidecar = r.out / "song" / "song.mvsep.json"
        first_hash = json.loads(sidecar.read_text())["mvsep_hash"]
        assert first_hash == r.job(first).mvsep_hash
        with capture_logs() as logs:
            again = r.submit(_drop_again(r, song), after_success="archive")
            assert r.engine.run_until_idle(20)
        job = r.job(again)
        assert job.state is JobState.FILED and job.duplicate_of == first
        assert job.outputs == r.job(first).outputs  # the earlier stems, where they are
        after = {p: p.read_bytes() for p in _files(r.out)}
        assert after == before  # no "(2)" copies, the sidecar untouched
        assert not [p for p in after if "(2)" in p.name]
        assert json.loads(sidecar.read_text())["mvsep_hash"] == first_hash
        assert r.creates() == 1
        said = [e for e in logs if e["event"] == "same audio already filed: nothing new filed"]
        assert said and said[0]["path"] == list(job.outputs) and said[0]["job_id"] == again
        filed = [e for e in logs if e["event"] == "job filed" and e["job_id"] == again]
        assert filed and filed[0]["path"] == list(job.outputs)  # `job filed` lists the stems
        text = _status_text(r)
        assert f"same audio as job {first}: nothing new filed" in text
        assert str(r.out / "song") in text and "0 credits" in text


def test_stems_gone_are_filed_again_and_the_first_sidecar_is_kept(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        song = audio_file("in/song.wav", seconds=0.5)
        first = r.submit(song, after_success="archive")
        assert r.engine.run_until_idle(20)
        for stem in r.job(first).outputs:
            Path(stem).unlink()  # the user moved the stems away; the sidecar stayed
        sidecar = r.out / "song" / "song.mvsep.json"
        first_data = json.loads(sidecar.read_text())
        again = r.submit(_drop_again(r, song), after_success="archive")
        assert r.engine.run_until_idle(20)
        job = r.job(again)
        assert job.state is JobState.FILED and job.outputs
        assert all(Path(p).is_file() for p in job.outputs)
        assert json.loads(sidecar.read_text()) == first_data  # never overwritten
        second = json.loads((r.out / "song" / "song.mvsep (2).json").read_text())
        assert second["job_id"] == again and second["outputs"] == list(job.outputs)


def test_a_copy_for_another_output_folder_is_still_copied(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        song = audio_file("in/song.wav", seconds=0.5)
        first = r.submit(song)
        assert r.engine.run_until_idle(20)
        other_out = tmp_path / "other-out"
        other_out.mkdir()
        copy = r.inbox / "copy.wav"
        copy.write_bytes(song.read_bytes())
        again = r.submit(copy, output_dir=other_out)
        assert r.engine.run_until_idle(20)
        job = r.job(again)
        assert job.state is JobState.FILED and job.duplicate_of == first
        assert job.outputs and all(Path(p).is_relative_to(other_out) for p in job.outputs)
        assert all(Path(p).is_file() for p in job.outputs) and r.creates() == 1
