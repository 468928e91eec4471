"""The sequential baseline: one file at a time, polled every 20 s, as MVSEP's public examples do.

Plain httpx, no code of the project: submit a file (``POST /api/separation/create``), wait
``--poll`` seconds, ask ``GET /api/separation/get`` until the job is done (waiting the same
interval between asks), download every stem, then take the next file. A 429 waits its
``Retry-After``. Used by ``bench/bench_throughput.py`` as the baseline; also a command::

    .venv/bin/python bench/sequential_client.py --base-url http://127.0.0.1:PORT FILE...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass(frozen=True)
class FileResult:
    """One file's outcome: seconds from its create to its last stem on disk, and calls made."""

    name: str
    seconds: float
    calls: int
    stems: int


def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One API request, repeated after a 429's ``Retry-After``."""
    while True:
        response = client.request(method, url, **kwargs)
        if response.status_code != 429:
            response.raise_for_status()
            return response
        time.sleep(float(response.headers.get("Retry-After", "1") or 1))


def separate_one(
    client: httpx.Client, path: Path, out: Path, *, token: str, sep_type: int, poll_s: float
) -> FileResult:
    """Submit ``path``, poll every ``poll_s`` until done, download its stems into ``out``."""
    started = time.monotonic()
    with path.open("rb") as fh:
        created = _call(
            client,
            "POST",
            "/api/separation/create",
            data={"api_token": token, "sep_type": str(sep_type), "output_format": "1"},
            files={"audiofile": (path.name, fh)},
        ).json()
    job_hash = created["data"]["hash"]
    calls = 1
    while True:
        time.sleep(poll_s)
        body = _call(client, "GET", "/api/separation/get", params={"hash": job_hash}).json()
        calls += 1
        files = (body.get("data") or {}).get("files") or []
        if body.get("status") == "done" and files and all(f.get("url") for f in files):
            break
        if body.get("status") in ("failed", "not_found"):
            raise RuntimeError(f"{path.name}: {body}")
    folder = out / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    for n, stem in enumerate(files):
        with client.stream("GET", stem["url"]) as response:
            response.raise_for_status()
            with (folder / f"{n} {stem.get('type', 'stem')}.wav").open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
    return FileResult(path.name, time.monotonic() - started, calls, len(files))


def run(
    base_url: str,
    files: list[Path],
    out: Path,
    *,
    token: str,
    sep_type: int = 40,
    poll_s: float = 20.0,
) -> list[FileResult]:
    """Every file in turn."""
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(120.0)) as client:
        return [
            separate_one(client, path, out, token=token, sep_type=sep_type, poll_s=poll_s)
            for path in files
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--sep-type", type=int, default=40)
    parser.add_argument("--poll", type=float, default=20.0, help="seconds between gets")
    args = parser.parse_args(argv)
    token = os.environ.get("MVSEP_API_TOKEN", "")
    if not token:
        print("set MVSEP_API_TOKEN", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = run(args.base_url, args.files, args.out, token=token, sep_type=args.sep_type,
                  poll_s=args.poll)  # fmt: skip
    for r in results:
        print(f"{r.name}: {r.seconds:.1f} s, {r.calls} calls, {r.stems} stems")
    print(f"{len(results)} files in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
