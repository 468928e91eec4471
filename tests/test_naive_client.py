"""The emulator driven as a naive public MVSEP client drives the real service.

Plain httpx and the standard library only: no project code but starting the emulator. Like
the public example clients it lists the algorithms and ``json.loads`` every field's options,
sends ``add_opt1``..``add_opt3`` always (``""`` when nothing was chosen), polls ``get`` by
the top-level ``status`` and saves each ``data.files[].url`` as ``data.files[].download``.
"""

from __future__ import annotations

import json
import math
import struct
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CAPTURES

TOKEN = "naive-client-token"
POLL_S = 0.2
DEADLINE_S = 60.0


def write_wav(path: Path, seconds: float = 1.0, rate: int = 22050) -> Path:
    """A stereo 16-bit tone, written with the standard library."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        left = int(12000 * math.sin(2 * math.pi * 220 * i / rate))
        right = int(9000 * math.sin(2 * math.pi * 1760 * i / rate))
        frames += struct.pack("<hh", left, right)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def pick_types(algorithms: list[dict[str, Any]], premium: bool) -> list[dict[str, Any]]:
    """Types a user might choose: one without fields, the one with the most, every type with
    a text or textarea field; only active ones the plan may use (orientation 2: premium)."""
    usable = [
        t for t in algorithms if int(t["is_active"]) and (premium or int(t["orientation"]) != 2)
    ]
    chosen = [next(t for t in usable if not t["algorithm_fields"])]
    chosen.append(max(usable, key=lambda t: len(t["algorithm_fields"])))
    chosen += [
        t
        for t in usable
        if any(f["input_type"] in ("text", "textarea") for f in t["algorithm_fields"])
    ]
    return list({t["render_id"]: t for t in chosen}.values())


def list_algorithms(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get("/api/app/algorithms")
    answer.raise_for_status()
    algorithms: list[dict[str, Any]] = answer.json()
    for algorithm in algorithms:
        for field in algorithm["algorithm_fields"]:
            field["options"] = json.loads(field["options"])  # what the public clients do
    return algorithms


def separate(client: httpx.Client, song: Path, sep_type: int, out_dir: Path) -> list[Path]:
    """Create, poll, download: the whole naive flow for one file."""
    with song.open("rb") as fh:
        answer = client.post(
            "/api/separation/create",
            data={
                "api_token": TOKEN,
                "sep_type": str(sep_type),
                "add_opt1": "",
                "add_opt2": "",
                "add_opt3": "",
            },
            files={"audiofile": (song.name, fh, "audio/wav")},
        )
    answer.raise_for_status()
    created = answer.json()
    assert created["success"], created  # truthiness: "true" and true both pass
    job_hash = created["data"]["hash"]
    deadline = time.monotonic() + DEADLINE_S
    while True:
        polled = client.get("/api/separation/get", params={"hash": job_hash})
        polled.raise_for_status()
        body = polled.json()
        if body["status"] == "done":
            break
        assert body["status"] not in ("failed", "not_found"), body
        assert time.monotonic() < deadline, f"still {body['status']} after {DEADLINE_S} s"
        time.sleep(POLL_S)
    saved = []
    for entry in body["data"]["files"]:
        target = out_dir / entry["download"]
        download = client.get(entry["url"])
        download.raise_for_status()
        target.write_bytes(download.content)
        saved.append(target)
    return saved


@pytest.fixture(params=["built-in", "capture"])
def catalogue(request: pytest.FixtureRequest) -> Path | None:
    if request.param == "built-in":
        return None
    path = CAPTURES / "algorithms.json"
    if not path.is_file():
        pytest.skip(f"the real catalogue capture is not at {path} (only in the dev workspace)")
    return path


@pytest.mark.parametrize("premium", [False, True], ids=["free", "premium"])
def test_a_naive_public_client_works(
    make_emulator: Callable[..., Any], catalogue: Path | None, premium: bool, tmp_path: Path
) -> None:
    emulator = make_emulator(catalogue_path=catalogue, premium=premium)
    song = write_wav(tmp_path / "My Song.wav")
    with httpx.Client(base_url=emulator.base_url, timeout=60) as client:
        chosen = pick_types(list_algorithms(client), premium)
        assert len(chosen) >= 3
        for algorithm in chosen:
            out_dir = tmp_path / f"type-{algorithm['render_id']}"
            out_dir.mkdir()
            saved = separate(client, song, int(algorithm["render_id"]), out_dir)
            stems = json.loads(algorithm.get("output_stems") or "[]")
            assert len(saved) == (len(stems) or 2), (algorithm["render_id"], saved)
            assert len({p.name for p in saved}) == len(saved)
            assert all(p.stat().st_size > 0 for p in saved)
