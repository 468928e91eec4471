"""JSON bodies of the emulated API, shaped as the real service answers (see mvsep-api.md)."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from daemon.emulator.jobs import Job, Phase, StemOut
from daemon.formats import BY_CODE

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
NOT_FOUND_MESSAGE = "File or File Hash not found"  # the real text (public clients, 2026)


@dataclass
class Answer:
    """An HTTP answer: status code, JSON body, extra headers."""

    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def error_message(message: str, status_code: int = 400) -> Answer:
    """``{"success": false, "data": {"message": ...}}`` (bad parameters)."""
    return Answer(status_code, {"success": False, "data": {"message": message}})


def error_list(message: str, status_code: int = 400) -> Answer:
    """``{"success": false, "errors": [...]}`` (premium-only requests, parallel limit)."""
    return Answer(status_code, {"success": False, "errors": [message]})


def error_plain(message: Any, status_code: int = 400) -> Answer:
    """``{"success": false, "message": ...}`` (user calls; Laravel validation dicts)."""
    return Answer(status_code, {"success": False, "message": message})


def not_found() -> Answer:
    """The answer for an unknown or expired hash."""
    return Answer(
        200,
        {"success": False, "status": "not_found", "data": {"message": NOT_FOUND_MESSAGE}},
    )


def human_size(size: int) -> str:
    """Sizes as MVSEP shows them: ``"5.70 MB"``."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.2f} MB"
    if size >= 1024:
        return f"{size / 1024:.2f} KB"
    return f"{size} B"


def slugify_name(name: str) -> str:
    """``"10 - Luke's Theme.MP3"`` -> ``"10-luke-s-theme.mp3"`` (extension kept)."""
    base, dot, ext = name.rpartition(".")
    if not dot or not base:
        base, ext = name, ""
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "audio"
    ext = re.sub(r"[^a-z0-9]+", "", ext.lower())
    return f"{slug}.{ext}" if ext else slug


def format_date(moment: datetime) -> str:
    """``YYYY-MM-DD hh:mm:ss``."""
    return moment.strftime(DATE_FORMAT)


def file_url(base_url: str, job: Job, filename: str) -> str:
    """The download url of one of a job's files."""
    return f"{base_url}/storage/{quote(job.hash)}/{quote(filename)}"


def input_url(base_url: str, job: Job) -> str:
    """The download url of a job's input."""
    return f"{base_url}/storage/temp/{quote(job.hash)}"


def status_body(job: Job, phase: Phase, *, base_url: str, queue: tuple[int, int]) -> dict[str, Any]:
    """The ``get`` body of a job that exists (not expired)."""
    status = "failed" if phase.status == "cancelled" else phase.status
    data: dict[str, Any] = {"message": _status_message(job, phase)}
    if phase.status == "waiting":
        data["queue_count"], data["current_order"] = queue
    if phase.status in ("distributing", "merging"):
        data["finished_chunks"] = phase.finished_chunks
        data["all_chunks"] = phase.all_chunks
    if phase.status == "done":
        data.update(_done_data(job, phase, base_url))
    return {"success": True, "status": status, "data": data}


def _status_message(job: Job, phase: Phase) -> str:
    messages = {
        "waiting": "The separation is waiting in the queue",
        "processing": "The separation is being processed",
        "distributing": "The file is being processed in chunks",
        "merging": "Merging the processed chunks",
        "done": "The separation is done",
        "cancelled": "The separation was cancelled",
    }
    if phase.status == "failed":
        return job.failure or "Separation failed"
    return messages.get(phase.status, phase.status)


def _done_data(job: Job, phase: Phase, base_url: str) -> dict[str, Any]:
    fmt = BY_CODE[job.output_format]
    files = [_file_entry(job, stem, base_url) for stem in job.files]
    return {
        "algorithm": job.type_spec.name,
        "algorithm_description": job.type_spec.description,
        "size": human_size(job.input_size),
        "output_format": fmt.label,
        "tags": {"audio": {"dataformat": job.input_path.suffix.lstrip(".")}},
        "input_file": {
            "url": input_url(base_url, job),
            "size": human_size(job.input_size),
            "download": job.hash,
        },
        "files": files if phase.files_visible else [],
        "date": format_date(job.created_at),
    }


def _file_entry(job: Job, stem: StemOut, base_url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": stem.label,
        "url": file_url(base_url, job, stem.filename),
        "size": human_size(stem.size),
        "image": "",
        "download": stem.filename,
    }
    if job.peaks_len > 0:
        entry["peaks"] = peaks_of(job, stem)
    return entry


def peaks_of(job: Job, stem: StemOut) -> list[float]:
    """The stem's ``peaks``: ``job.peaks_len`` waveform-like numbers in 0..1, made once.

    The real array's meaning is not documented (a waveform for the site's player); these are
    seeded by the job hash and file name, so every answer carries the same numbers.
    """
    if stem.peaks is None or len(stem.peaks) != job.peaks_len:
        rng = random.Random(f"{job.hash}/{stem.filename}")
        stem.peaks = [round(rng.random(), 4) for _ in range(job.peaks_len)]
    return stem.peaks


def history_entry(job: Job, phase: Phase, now: float) -> dict[str, Any]:
    """One entry of ``separation_history``."""
    exists = phase.status not in ("expired",)
    spec = job.type_spec
    stamp = format_date(job.created_at)
    return {
        "id": job.id,
        "hash": job.hash,
        "created_at": stamp,
        "updated_at": stamp,
        "job_exists": exists,
        "credits": _number(job.credits) if exists else None,
        "time_left": _time_left(job, now),
        "algorithm": {
            "name": spec.name,
            "algorithm_group_id": spec.raw.get("algorithm_group_id"),
            "orientation": spec.orientation,
            "render_id": spec.render_id,
            "order_id": spec.raw.get("order_id"),
            "created_at": spec.raw.get("created_at"),
            "updated_at": spec.raw.get("updated_at"),
        },
    }


def _time_left(job: Job, now: float) -> int:
    """Seconds until deletion; a job still queued for a slot: the whole keeping time."""
    left = job.deletion_at() - now
    return int(left) if math.isfinite(left) else int(job.expire_after_s)


def _number(value: float) -> float | int:
    """Whole numbers as ints, as the real service shows credits."""
    return int(value) if float(value).is_integer() else value
