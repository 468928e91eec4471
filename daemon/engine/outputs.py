"""PURE: where a job's stems go. Template fields (today and the tags passed in), the final
paths with collisions resolved, the sidecar's path and content. No I/O: existence checks
come in as a callable, time as a value.

No template field renders empty: a missing tag falls back (``{title}`` → the file's name,
``{artist}`` → "Unknown Artist"), so ``{artist}/{title}/{stem}.{ext}`` keeps every folder
level and two untagged songs never share a folder. The one exception is
``{relative_dir}``: empty for a file at the top of its inbox, and that folder level is
meant to vanish (the default template starts with it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from daemon import filing
from daemon.formats import BY_CODE
from daemon.jobs import Job, ResultFile, SourceFile

UNKNOWN_ARTIST = "Unknown Artist"
UNKNOWN_ALGORITHM = "Unknown Algorithm"
NO_HASH = "no-hash"
"""``{hash}`` of a job filed from an earlier result (a duplicate) that was never sent."""


@dataclass(frozen=True)
class Tags:
    """What the input's tags say (``None``: the tag is absent)."""

    artist: str | None = None
    title: str | None = None


def _given(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def stem_ext(result: ResultFile, output_format: int) -> str:
    ext = PurePosixPath(result.download).suffix.lstrip(".") if result.download else ""
    if not ext:
        fmt = BY_CODE.get(output_format)
        ext = fmt.ext if fmt else "bin"
    return ext


def template_fields(
    source: SourceFile,
    result: ResultFile,
    *,
    mvsep_hash: str | None,
    today: date,
    tags: Tags,
) -> dict[str, str]:
    """The value of every field in :data:`daemon.filing.TEMPLATE_FIELDS`, none empty (but
    ``relative_dir``, see the module docstring)."""
    name = source.path.stem or source.path.name or "untitled"
    return {
        "inbox": source.inbox or "inbox",
        "relative_dir": str(PurePosixPath(source.relative_path).parent).strip("."),
        "name": name,
        "stem": result.type.strip() or "stem",
        "preset": source.preset or "preset",
        "sep_type": str(source.request.sep_type),
        "algorithm": _given(source.request.algorithm_name) or UNKNOWN_ALGORITHM,
        "date": today.isoformat(),
        "ext": stem_ext(result, source.request.output_format),
        "artist": _given(tags.artist) or UNKNOWN_ARTIST,
        "title": _given(tags.title) or name,
        "hash": mvsep_hash or NO_HASH,
    }


def plan_paths(
    source: SourceFile,
    fields: Iterable[Mapping[str, str]],
    *,
    exists: Callable[[Path], bool],
) -> list[Path]:
    """The final path of each stem (one field mapping per stem), the collision policy
    applied: ``suffix`` gives the first free ``name (2).ext``; ``skip`` gives ``Path("")``
    for a stem whose destination exists (not written); ``overwrite`` the path itself. Two
    stems of one job rendering to one name are told apart by a suffix too."""
    chosen: list[Path] = []
    for values in fields:
        rel = filing.render_output_path(source.output_template, values)
        dest = source.output_dir / Path(*rel.parts)
        chosen.append(_resolve(dest, source.on_collision, set(chosen), exists))
    return chosen


def _resolve(dest: Path, policy: str, taken: set[Path], exists: Callable[[Path], bool]) -> Path:
    if policy == "skip" and exists(dest):
        return Path("")
    if policy not in filing.COLLISION_POLICIES:
        raise ValueError(f"unknown collision policy {policy!r}; expected suffix, overwrite, skip")
    n = 2
    final = dest
    while final in taken or (policy == "suffix" and exists(final)):
        final = filing.with_counter(dest, n)
        n += 1
    return final


def is_skipped(planned: str) -> bool:
    """A stem not written because its destination existed (``on_collision = "skip"``)."""
    return planned in ("", ".")


def sidecar_path(source: SourceFile, first_output: Path) -> Path:
    """``NAME.mvsep.json`` beside the first stem; a long name is cut, never the suffix."""
    return first_output.parent / filing.safe_name(source.path.stem, ".mvsep.json")


def sidecar_data(job: Job, outputs: list[Path], *, filed_at: datetime) -> dict[str, Any]:
    request = job.source.request
    return {
        "source": str(job.source.path),
        "inbox": job.source.inbox,
        "preset": job.source.preset,
        "algorithm": request.algorithm_name,
        "sep_type": request.sep_type,
        "options": request.options,
        "output_format": request.output_format,
        "mvsep_hash": job.mvsep_hash,
        "duplicate_of_job": job.duplicate_of,
        "sha256": job.sha256,
        "submitted_at": _iso(job.intent_at, filed_at),
        "filed_at": filed_at.isoformat(timespec="seconds"),
        "outputs": [str(p) for p in outputs],
        "job_id": job.id,
    }


def _iso(stamp: float | None, like: datetime) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, tz=like.tzinfo).isoformat(timespec="seconds")
