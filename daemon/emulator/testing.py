"""Small helpers for tests that drive the emulator with a plain ``httpx.Client``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def create(
    client: httpx.Client, path: Path | None = None, *, token: str = "test-token", **fields: Any
) -> httpx.Response:
    """``POST /api/separation/create`` with ``path`` as ``audiofile`` and form ``fields``."""
    data = {"api_token": token, **{k: str(v) for k, v in fields.items()}}
    if path is None:
        return client.post("/api/separation/create", data=data)
    with path.open("rb") as fh:
        return client.post(
            "/api/separation/create", data=data, files={"audiofile": (path.name, fh)}
        )


def get(client: httpx.Client, job_hash: str) -> dict[str, Any]:
    """``GET /api/separation/get`` as JSON."""
    body: dict[str, Any] = client.get("/api/separation/get", params={"hash": job_hash}).json()
    return body


def wait_for(
    client: httpx.Client,
    job_hash: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
) -> dict[str, Any]:
    """Poll ``get`` until ``predicate(body)``; raise ``TimeoutError`` with the last body."""
    deadline = time.monotonic() + timeout_s
    body = get(client, job_hash)
    while not predicate(body):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_hash} never matched; last answer: {body}")
        time.sleep(interval_s)
        body = get(client, job_hash)
    return body


def finished(body: dict[str, Any]) -> bool:
    """Done with every file url present."""
    files = body.get("data", {}).get("files") or []
    return body.get("status") == "done" and bool(files) and all(f.get("url") for f in files)


def status_in(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate: the job's status is one of ``statuses``."""
    return lambda body: body.get("status") in statuses


class ManualClock:
    """A monotonic clock that only moves when told to (pass it as ``EmulatorServer(clock=)``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self._now += seconds
