"""The ``downloading`` state's work: stage the stems, plan their final paths, file them once.

Stems are downloaded (or, for a duplicate, copied) into ``<staging>/<job id>/`` — outside the
output tree, so a kill mid-download leaves no ``.part`` among the outputs; the client resumes
a staged ``.part`` with ``Range``. Then the final paths are chosen (collision policy applied)
and journaled BEFORE any is written. Each stem is moved into place through ``dest.part`` +
fsync + rename. On a restart a planned path that already exists (with the staged file's size,
or whose staged file was already moved) counts as filed: never suffixed a second time.
Only after ``filed`` is committed is the input archived, deleted or kept.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from datetime import datetime
from pathlib import Path

from daemon import filing
from daemon.engine import credits, outputs
from daemon.engine.context import (
    Aborted,
    Context,
    ids,
    log,
    record_error,
    wait_for_missing_folder,
)
from daemon.engine.dispose import dispose_filed_source, fail
from daemon.engine.outputs import Tags, is_skipped
from daemon.engine.poll import expired
from daemon.engine.retry import Step
from daemon.errors import ApiConnectionError, ApiNotFound, RetryLater, Stopping, WillNeverWork
from daemon.jobs import Job, JobState, ResultFile


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
    if _already_in_place(job):
        _file_nothing_new(ctx, job)
        return
    try:
        _stage_all(ctx, job)
        if _wait_for_output(ctx, job):
            return
        job = _plan(ctx, job)
        _file_all(ctx, job)
    except Stopping:
        log.info("transfer stopped; resumes on restart", **ids(job))
        return
    except ApiNotFound:
        expired(ctx, ctx.journal.get(job.id))
        return
    except (RetryLater, WillNeverWork, OSError) as exc:
        _download_failed(ctx, job, exc)
        return
    current = ctx.journal.get(job.id)
    if current.state is not JobState.DOWNLOADING:  # cancelled meanwhile (discard policy)
        _drop_staging(ctx, job)
        return
    record_credits(ctx, current)
    paths = [Path(p) for p in current.planned_outputs or () if not is_skipped(p)]
    filed = ctx.journal.mark_filed(job.id, paths)
    _drop_staging(ctx, job)
    dispose_filed_source(ctx, filed)


def _download_failed(ctx: Context, job: Job, exc: BaseException) -> None:
    current = ctx.journal.get(job.id)
    if current.state is not JobState.DOWNLOADING:
        return
    if filing.is_naming_error(exc):  # the same name fails the same way: not retried
        _drop_staging(ctx, job)
        fail(ctx, current, f"the stems could not be filed under their names: {exc}")
        return
    after = record_error(ctx, current, exc, step=Step.DOWNLOAD)
    if after.state is JobState.RETRY_WAIT:  # a failure of this try: WARNING (failed logs its own)
        log.warning("download or filing failed; trying again later", **ids(job),
                    error=after.last_error, attempt=after.attempts)  # fmt: skip


def _already_in_place(job: Job) -> bool:
    """The same audio again (a duplicate) whose earlier stems are still where they were
    filed, in this job's output folder: filing them again would only make ``(2)`` copies."""
    if job.duplicate_of is None or not job.result_files:
        return False
    root = job.source.output_dir
    return all(
        f.local and Path(f.local).is_file() and Path(f.local).is_relative_to(root)
        for f in job.result_files
    )


def _file_nothing_new(ctx: Context, job: Job) -> None:
    """File the duplicate as the earlier job's stems, in place: no copy, no new sidecar."""
    paths = [Path(f.local) for f in job.result_files]
    if job.planned_outputs is None:
        job = ctx.journal.mark_outputs_planned(job.id, paths)
    log.info("same audio already filed: nothing new filed", **ids(job),
             duplicate_of=job.duplicate_of, path=[str(p) for p in paths])  # fmt: skip
    filed = ctx.journal.mark_filed(job.id, paths)
    dispose_filed_source(ctx, filed)


def record_credits(ctx: Context, job: Job) -> None:
    """What the job cost comes from a later history read shared by the jobs filed
    meanwhile (``engine/credits.py``): filing never waits for it; unknown is fine."""
    credits.want(ctx, job)


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
            is_skipped(planned[i]) or _already_filed(Path(planned[i]), staged)
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
        filing.copy_atomically(Path(result.local), staged)
        return

    def progress(received: int, total: int | None) -> None:
        ctx.check_abort()
        ctx.progress(
            job.id, "download", {"stem": result.type, "received": received, "total": total}
        )

    ctx.client_for(job).download(result.url, staged, progress=progress)


def _already_filed(dest: Path, staged: Path) -> bool:
    if not dest.is_file():
        return False
    if not staged.exists():
        return True  # the staged file was moved onto dest
    return dest.stat().st_size == staged.stat().st_size


def _tags(ctx: Context, job: Job) -> Tags:
    """The input's tags; none if it cannot be read now."""
    try:
        probe = ctx.probe(job.source.path)
    except Exception:  # the input may be unreadable now: the fallbacks apply
        return Tags()
    return Tags(artist=probe.artist, title=probe.title)


def _local_now(ctx: Context) -> datetime:
    return datetime.fromtimestamp(ctx.clock.time()).astimezone()


def _plan(ctx: Context, job: Job) -> Job:
    """Choose and journal the final paths (before writing any); clean stale ``.part``s."""
    _still_wanted(ctx, job)
    if job.planned_outputs is not None:
        for planned in job.planned_outputs:
            if not is_skipped(planned):
                Path(planned + ".part").unlink(missing_ok=True)
        return job
    today = _local_now(ctx).date()
    tags = _tags(ctx, job)
    fields = [
        outputs.template_fields(
            job.source, result, mvsep_hash=job.mvsep_hash, today=today, tags=tags
        )
        for result in job.result_files
    ]
    with _PLANNING:  # two jobs planning at once never choose one name
        taken = _planned_by_others(ctx, job)
        chosen = outputs.plan_paths(
            job.source, fields, exists=lambda p: str(p) in taken or os.path.lexists(p)
        )
        return ctx.journal.mark_outputs_planned(job.id, chosen)


_PLANNING = threading.Lock()
"""Held from choosing a job's output names to journaling them."""


def _planned_by_others(ctx: Context, job: Job) -> set[str]:
    """The paths other unfinished jobs planned and may not have written yet (two versions
    of one file, filed at once, would otherwise pick the same free name)."""
    return {
        planned
        for other in ctx.journal.jobs_in((JobState.DOWNLOADING,))
        if other.id != job.id
        for planned in other.planned_outputs or ()
    }


def _file_all(ctx: Context, job: Job) -> None:
    assert job.planned_outputs is not None
    filed: list[Path] = []
    for planned, staged in zip(job.planned_outputs, staged_paths(ctx, job), strict=True):
        if is_skipped(planned):
            continue
        dest = Path(planned)
        filed.append(dest)
        if _already_filed(dest, staged):
            continue
        _still_wanted(ctx, job)
        filing.file_atomically(staged, dest, on_collision="overwrite", move=True)
    if job.source.sidecar and filed:
        data = outputs.sidecar_data(job, filed, filed_at=_local_now(ctx))
        filing.write_sidecar(
            _own_sidecar_path(outputs.sidecar_path(job.source, filed[0]), job), data
        )


def _own_sidecar_path(path: Path, job: Job) -> Path:
    """``path``, or ``name (2).json``… if another job's sidecar is there: never overwritten."""
    candidate, n = path, 2
    while candidate.exists() and _sidecar_job(candidate) != job.id:
        candidate = filing.with_counter(path, n)
        n += 1
    return candidate


def _sidecar_job(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    job_id = data.get("job_id") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, int) else None


def _drop_staging(ctx: Context, job: Job) -> None:
    shutil.rmtree(staging_dir(ctx, job), ignore_errors=True)


def drop_cancelled_staging(ctx: Context, job: Job) -> None:
    """Remove the staging folder of a job that ended without filing."""
    _drop_staging(ctx, job)


__all__ = ["download_and_file", "drop_cancelled_staging"]
