"""The engine's filing step: stage the stems, plan their final paths, file them exactly once.

Stems are downloaded (or, for a duplicate, copied) into ``<staging>/<job id>/`` — outside the
output tree, so a kill mid-download leaves no ``.part`` among the outputs; the client resumes
a staged ``.part`` with ``Range``. Then the final paths are chosen (collision policy applied)
and journaled BEFORE any is written. Each stem is moved into place through ``dest.part`` +
fsync + rename. On a restart a planned path that already exists (with the staged file's size,
or whose staged file was already moved) counts as filed: never suffixed a second time.
Only after ``filed`` is committed is the input archived, deleted or kept.
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from daemon import filing
from daemon.errors import ApiConnectionError, ApiNotFound, RetryLater, Stopping, WillNeverWork
from daemon.formats import BY_CODE
from daemon.jobs import Job, JobState, ResultFile
from daemon.submission import expired
from daemon.workflow import (
    Aborted,
    Context,
    dispose_filed_source,
    fail,
    handle_error,
    log,
    wait_for_missing_folder,
)


def staging_dir(ctx: Context, job: Job) -> Path:
    return ctx.staging_dir / str(job.id)


def staged_paths(ctx: Context, job: Job) -> list[Path]:
    root = staging_dir(ctx, job)
    return [
        root / f"{i:02d}-{filing.safe_component(f.download or f.type or 'stem', max_bytes=120)}"
        for i, f in enumerate(job.result_files)
    ]


def download_and_file(ctx: Context, job: Job) -> None:
    """Run the whole ``downloading`` state of a job; errors become job states."""
    try:
        _stage_all(ctx, job)
        if _wait_for_output(ctx, job):
            return
        job = _plan(ctx, job)
        _file_all(ctx, job)
    except Stopping:
        log.info("transfer stopped; resumes on restart", job_id=job.id, file=str(job.source.path))
        return
    except ApiNotFound:
        expired(ctx, ctx.journal.get(job.id))
        return
    except (RetryLater, WillNeverWork, OSError) as exc:
        current = ctx.journal.get(job.id)
        if current.state is JobState.DOWNLOADING:
            handle_error(ctx, current, exc, resume=None)
        return
    current = ctx.journal.get(job.id)
    if current.state is not JobState.DOWNLOADING:  # cancelled meanwhile (discard policy)
        _drop_staging(ctx, job)
        return
    outputs = [Path(p) for p in current.planned_outputs or () if not _skipped(p)]
    filed = ctx.journal.mark_filed(job.id, outputs)
    _drop_staging(ctx, job)
    dispose_filed_source(ctx, filed)


def _wait_for_output(ctx: Context, job: Job) -> bool:
    """True if the job must wait because its output folder is missing.

    The folder exists from the start (the daemon creates it), so missing now means an
    unmounted share: filing would build a stray tree in the bare mount point. The stems wait
    in staging, and the job looks again later; it never fails for it.
    """
    root = job.source.output_dir
    if root.is_dir():
        return False
    reason = f"the output folder {root} is missing (unmounted share?): the stems wait in staging"
    wait_for_missing_folder(ctx, job, reason)
    return True


def _still_wanted(ctx: Context, job: Job) -> None:
    ctx.check_abort()
    if ctx.journal.get(job.id).state is not JobState.DOWNLOADING:
        raise Aborted("job left downloading (cancelled)")


def _stage_all(ctx: Context, job: Job) -> None:
    planned = job.planned_outputs
    for i, (result, staged) in enumerate(
        zip(job.result_files, staged_paths(ctx, job), strict=True)
    ):
        _still_wanted(ctx, job)
        if planned is not None and (
            _skipped(planned[i]) or _already_filed(Path(planned[i]), staged)
        ):
            continue
        if staged.is_file() and staged.stat().st_size > 0:
            continue
        staged.parent.mkdir(parents=True, exist_ok=True)
        _fetch(ctx, job, result, staged)
        if staged.stat().st_size <= 0:
            staged.unlink()
            raise ApiConnectionError(f"stem {result.type!r} downloaded empty", endpoint="download")


def _fetch(ctx: Context, job: Job, result: ResultFile, staged: Path) -> None:
    if result.local:
        part = staged.with_name(staged.name + ".part")
        shutil.copyfile(result.local, part)
        part.replace(staged)
        return

    def progress(received: int, total: int | None) -> None:
        ctx.check_abort()
        ctx.progress(
            job.id, "download", {"stem": result.type, "received": received, "total": total}
        )

    ctx.client.download(result.url, staged, progress=progress)


def _skipped(planned: str) -> bool:
    """A stem not written because its destination existed (``on_collision = "skip"``)."""
    return planned in ("", ".")


def _already_filed(dest: Path, staged: Path) -> bool:
    if not dest.is_file():
        return False
    if not staged.exists():
        return True  # the staged file was moved onto dest
    return dest.stat().st_size == staged.stat().st_size


def template_fields(job: Job, result: ResultFile) -> dict[str, str]:
    source = job.source
    name = source.path.stem
    ext = PurePosixPath(result.download).suffix.lstrip(".") if result.download else ""
    if not ext:
        fmt = BY_CODE.get(source.request.output_format)
        ext = fmt.ext if fmt else "bin"
    artist = title = ""
    with contextlib.suppress(Exception):
        tags = _probe_tags(job)
        artist, title = tags
    return {
        "inbox": source.inbox,
        "relative_dir": str(PurePosixPath(source.relative_path).parent).strip("."),
        "name": name,
        "stem": result.type or "stem",
        "preset": source.preset,
        "sep_type": str(source.request.sep_type),
        "algorithm": source.request.algorithm_name,
        "date": datetime.now().strftime("%Y-%m-%d"),
        "ext": ext,
        "artist": artist,
        "title": title,
        "hash": job.mvsep_hash or "",
    }


_TAG_CACHE: dict[tuple[str, float], tuple[str, str]] = {}


def _probe_tags(job: Job) -> tuple[str, str]:
    key = (str(job.source.path), job.mtime)
    if key not in _TAG_CACHE:
        from daemon import media

        probe = media.probe(job.source.path)
        _TAG_CACHE[key] = (probe.artist or "", probe.title or "")
    return _TAG_CACHE[key]


def _plan(ctx: Context, job: Job) -> Job:
    """Choose and journal the final paths (before writing any); clean stale ``.part``s."""
    _still_wanted(ctx, job)
    if job.planned_outputs is not None:
        for planned in job.planned_outputs:
            if not _skipped(planned):
                Path(planned + ".part").unlink(missing_ok=True)
        return job
    chosen: list[Path] = []
    taken: set[Path] = set()
    for result in job.result_files:
        rel = filing.render_output_path(job.source.output_template, template_fields(job, result))
        dest = job.source.output_dir / Path(*rel.parts)
        chosen.append(_resolve(dest, job.source.on_collision, taken))
        taken.add(chosen[-1])
    return ctx.journal.mark_outputs_planned(job.id, chosen)


def _resolve(dest: Path, policy: str, taken: set[Path]) -> Path:
    if policy == "skip" and dest.exists():
        return Path("")
    final = filing.resolve_collision(dest, policy)
    n = 2
    while final in taken:  # two stems rendering to one name within this job
        final = dest.with_name(f"{dest.stem} ({n}){dest.suffix}")
        n += 1
    return final


def _file_all(ctx: Context, job: Job) -> None:
    assert job.planned_outputs is not None
    outputs: list[Path] = []
    for planned, staged in zip(job.planned_outputs, staged_paths(ctx, job), strict=True):
        if _skipped(planned):
            continue
        dest = Path(planned)
        outputs.append(dest)
        if _already_filed(dest, staged):
            continue
        _still_wanted(ctx, job)
        filing.file_atomically(staged, dest, on_collision="overwrite", move=True)
    if job.source.sidecar and outputs:
        filing.write_sidecar(_sidecar_path(job, outputs[0]), sidecar_data(job, outputs))


def _sidecar_path(job: Job, first_output: Path) -> Path:
    return first_output.parent / f"{job.source.path.stem}.mvsep.json"


def sidecar_data(job: Job, outputs: list[Path]) -> dict[str, Any]:
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
        "submitted_at": _iso(job.intent_at),
        "filed_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "outputs": [str(p) for p in outputs],
        "job_id": job.id,
    }


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


def _drop_staging(ctx: Context, job: Job) -> None:
    shutil.rmtree(staging_dir(ctx, job), ignore_errors=True)


def drop_cancelled_staging(ctx: Context, job: Job) -> None:
    """Remove the staging folder of a job that ended without filing."""
    _drop_staging(ctx, job)


__all__ = ["download_and_file", "drop_cancelled_staging", "fail", "sidecar_data"]
