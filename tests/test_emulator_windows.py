"""The emulator's crash-test windows: a create answered late, a download sent slowly."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from daemon.emulator import Fault

TOKEN = "window-token-1"


def create(base_url: str, song: Path) -> httpx.Response:
    with song.open("rb") as fh:
        return httpx.post(
            f"{base_url}/api/separation/create",
            data={"api_token": TOKEN, "sep_type": "40", "output_format": "1"},
            files={"audiofile": (song.name, fh, "audio/wav")},
            timeout=60,
        )


def test_delay_answer_creates_the_job_before_answering(make_emulator: Any, audio_file: Any) -> None:
    emulator = make_emulator()
    song = audio_file("late.wav", seconds=1.0)
    emulator.add_fault(Fault(kind="delay_answer", endpoint="create", delay_s=3.0))
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(create(emulator.base_url, song)))
    worker.start()
    deadline = time.monotonic() + 30
    while not emulator.jobs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.jobs and not answers  # the job exists, the answer has not come yet
    worker.join(timeout=30)
    (job_hash,) = emulator.jobs
    assert answers[0].json()["data"]["hash"] == job_hash


def test_throttle_download_spreads_the_body(make_emulator: Any, audio_file: Any) -> None:
    emulator = make_emulator()
    song = audio_file("slow.wav", seconds=1.0)
    job_hash = create(emulator.base_url, song).json()["data"]["hash"]
    deadline = time.monotonic() + 60
    files: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not files:
        body = httpx.get(
            f"{emulator.base_url}/api/separation/get", params={"hash": job_hash}
        ).json()
        files = [f for f in body["data"].get("files", []) if f.get("url")]
        time.sleep(0.1)
    url = files[0]["url"]
    plain = httpx.get(url, timeout=60).content
    emulator.add_fault(Fault(kind="throttle_download", endpoint="download", delay_s=2.0))
    started = time.monotonic()
    slow = httpx.get(url, timeout=60).content
    assert slow == plain and len(plain) > 0
    assert time.monotonic() - started >= 1.5


def test_cli_serves_on_the_port_it_is_given() -> None:
    """`mvsep-watch emulator --port N` binds N once (it used to bind twice and fail)."""
    import socket

    from daemon.emulator.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(["--port", str(port)], stop=stop)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/app/algorithms", timeout=30)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and thread.is_alive(), codes
                time.sleep(0.1)
        assert answer.status_code == 200 and isinstance(answer.json(), list)
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]
