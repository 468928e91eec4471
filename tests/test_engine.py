"""The engine against the real emulator over loopback, with a real SQLite journal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon.jobs import JobState

S = JobState


def test_happy_path_two_files(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.2)
    with rig(tmp_path, emu) as r:
        a = audio_file("in/a.wav", seconds=1.0)
        b = audio_file("in/live/b.wav", seconds=1.1)  # other audio: not a twin of a
        ids = [r.submit(a), r.submit(b, after_success="archive")]
        assert r.engine.submit_file(r.source(a)) is None  # the same file again: no new job
        assert r.engine.run_until_idle(30)
        for job_id in ids:
            job = r.job(job_id)
            assert job.state is S.FILED, job.last_error
            assert job.outputs and all(Path(p).stat().st_size > 0 for p in job.outputs)
            assert job.mvsep_hash and job.mvsep_hash in r.emulator.jobs
        assert (r.out / "a" / "a - vocals.wav").exists() or any((r.out / "a").glob("a - *.wav"))
        assert any((r.out / "live" / "b").glob("b - *.wav"))
        sidecar = json.loads((r.out / "a" / "a.mvsep.json").read_text())
        assert sidecar["sep_type"] == 48 and sidecar["mvsep_hash"] == r.job(ids[0]).mvsep_hash
        assert a.exists()  # keep
        assert not b.exists() and (r.inbox / "_processed" / "b.wav").exists()
        assert r.creates() == 2
        assert r.engine.slots == 1 and r.recorder.max_slots_held == 1  # free account
        assert emu.stats["creates_rejected"] == 0
        # intents never overlap: each submit_intent follows the previous job's result
        timeline = sorted(
            (e.id, e.kind) for i in ids for e in r.journal.events(i)
            if e.kind in ("submit_intent", "result_ready")
        )  # fmt: skip
        depth = 0
        for _, kind in timeline:
            depth += 1 if kind == "submit_intent" else -1
            assert depth <= 1
        assert not list(r.out.rglob("*.part"))
        kinds = [e.kind for e in r.journal.events(ids[0])]
        assert kinds[:4] == ["seen", "prepared", "submit_intent", "submitted"]
        assert kinds[-3:] == ["filed", "source_disposed", "credits"]  # read after filing


def test_premium_fills_its_slots(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True, processing_s=1.0)
    with rig(tmp_path, emu, premium_slots=2) as r:
        ids = [r.submit(audio_file(f"in/p{i}.wav", seconds=0.5 + 0.05 * i)) for i in range(3)]
        assert r.engine.run_until_idle(40)
        assert r.engine.slots == 2
        assert all(r.job(i).state is S.FILED for i in ids)
        assert r.recorder.max_slots_held == 2


def test_non_audio_input_fails_without_an_api_call(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        bogus = r.inbox / "notes.wav"
        bogus.write_text("this is not audio\n" * 20)
        job_id = r.submit(bogus)
        assert r.engine.run_until_idle(20)
        job = r.job(job_id)
        assert job.state is S.FAILED and "not an audio file" in (job.last_error or "")
        moved = r.inbox / "_failed" / "notes.wav"
        assert moved.exists() and not bogus.exists()
        report = (r.inbox / "_failed" / "notes.wav.error.txt").read_text()
        assert "not an audio file" in report and "How to retry" in report
        assert r.creates() == 0


def test_same_content_again_is_filed_from_the_earlier_result(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        first = audio_file("in/one.wav", seconds=0.5)
        first_id = r.submit(first)
        assert r.engine.run_until_idle(20)
        copy = r.inbox / "copy.wav"
        copy.write_bytes(first.read_bytes())
        copy_id = r.submit(copy)
        assert r.engine.run_until_idle(20)
        job = r.job(copy_id)
        assert job.state is S.FILED and job.duplicate_of == first_id and job.mvsep_hash is None
        assert len(job.outputs) == len(r.job(first_id).outputs)
        assert r.creates() == 1


def test_restart_resumes_a_queued_job_with_one_create(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=1.5)
    with rig(tmp_path, emu) as r:
        job_id = r.submit(audio_file("in/r.wav", seconds=0.5))
        r.engine.start()
        r.wait_state(job_id, S.QUEUED)
        r.restart()
        assert r.job(job_id).state in (S.QUEUED, S.DOWNLOADING)  # a late poll may have landed
        assert r.engine.run_until_idle(30)
        assert r.job(job_id).state is S.FILED
        assert r.creates() == 1


def test_restart_reconciles_a_submitting_job(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """A crash after the intent: the new engine looks in the history before anything else."""
    emu = make_emulator(processing_s=0.2)
    with rig(tmp_path, emu) as r:
        job_id = r.submit(audio_file("in/k.wav", seconds=0.5))
        r.journal.mark_prepared(job_id, "0" * 64, None)
        claimed = r.journal.claim_next_ready(lambda: "feedc0ffee12")
        assert claimed is not None and claimed.state is S.SUBMITTING
        # the POST happened (with the nonce in the name) but the daemon died before the answer
        resp = emu_create(emu, claimed.source.path, "feedc0ffee12-k.wav")
        assert "feedc0ffee12" in resp
        assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is S.FILED and job.mvsep_hash == resp
        assert r.creates() == 1
        assert any(e.kind == "submitted" and e.reason == resp for e in r.journal.events(job_id))


def emu_create(emu: Any, path: Path, name: str) -> str:
    import httpx

    with httpx.Client(base_url=emu.base_url) as http, path.open("rb") as fh:
        body = http.post(
            "/api/separation/create",
            data={"api_token": "test-token", "sep_type": "48", "add_opt1": "4",
                  "output_format": "1"},
            files={"audiofile": (name, fh)},
        ).json()  # fmt: skip
    return str(body["data"]["hash"])


def test_input_removed_before_it_was_prepared_is_cancelled_without_a_create(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        song = audio_file("in/gone.wav", seconds=0.5)
        job_id = r.submit(song)
        song.unlink()  # before the engine started: prepare finds it gone, its inbox there
        assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is S.CANCELLED and "removed before it was sent" in (job.last_error or "")
        assert r.creates() == 0
