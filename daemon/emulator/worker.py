"""What happens to a job off the event loop: fetch a url input, probe it, split it."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from daemon.emulator.audio import SplitCancelled, split_to_stems
from daemon.emulator.jobs import Job

if TYPE_CHECKING:
    from daemon.emulator.state import EmulatorState

NOT_AUDIO = "The uploaded file is not an audio file that can be decoded"


class FetchError(Exception):
    """A url input could not be fetched."""


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is http(s) on a loopback host (the only ones the emulator fetches)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_input(job: Job) -> None:
    """Download ``job.source_url`` to ``job.input_path`` (loopback only, no redirects)."""
    url = job.source_url or ""
    if not is_loopback_url(url):
        raise FetchError(f"Cannot download {url!r}: the emulator only fetches loopback urls")
    try:
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=30.0) as client:
            with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise FetchError(f"Cannot download {url!r}: HTTP {response.status_code}")
                with job.input_path.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
    except httpx.HTTPError as exc:
        raise FetchError(f"Cannot download {url!r}: {exc}") from exc


def run_job(state: EmulatorState, job: Job) -> None:
    """Fetch (url jobs), probe and split one job; report to the state when over."""
    try:
        if job.source_url is not None:
            fetch_input(job)
        state.probe_input(job)
        if job.duration_s is None:
            state.finish_dsp(job, failure=NOT_AUDIO)
            return
        split_job(state, job)
    except SplitCancelled:
        return
    except FetchError as exc:
        state.finish_dsp(job, failure=str(exc))
    except Exception as exc:  # noqa: BLE001 - any DSP error ends the job, as a failed job
        state.finish_dsp(job, failure=f"Separation failed: {exc}")
    else:
        state.finish_dsp(job)


def split_job(state: EmulatorState, job: Job) -> None:
    """Write the job's stems and record their sizes."""
    paths = [job.job_dir / stem.filename for stem in job.files]
    split_to_stems(
        job.input_path,
        paths,
        output_format=job.output_format,
        should_stop=lambda: state.stopping.is_set() or job.cancelled,
    )
    with state.lock:
        for stem, path in zip(job.files, paths, strict=True):
            stem.size = path.stat().st_size
