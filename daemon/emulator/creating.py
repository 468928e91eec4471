"""``POST /api/separation/create``: checks, saving the upload, registering the job."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from daemon.emulator.answers import Answer, error_list, error_message, slugify_name
from daemon.emulator.audio import AudioInfo, probe
from daemon.emulator.jobs import Job, StemOut
from daemon.emulator.state import Account, EmulatorState
from daemon.emulator.validation import CreateRequest, plan_caps, validate_create
from daemon.formats import BY_CODE


def parallel_message(limit: int) -> str:
    """The parallel-limit error (the client keys on the word "parallel")."""
    return (
        f"You have reached the limit of parallel separations ({limit}). "
        "Please wait until the previous separation is finished."
    )


async def create_job(
    state: EmulatorState,
    account: Account,
    params: dict[str, str],
    upload: UploadFile | None,
    *,
    base_url: str,
    region: str | None,
) -> Answer:
    """Validate, save and register one job; the answer carries ``data.hash``/``data.link``.

    ``region`` is the region the request reached (None without regions); the job lives
    there. ``success`` is the string ``"true"``, as the real create answers.
    """
    request = validate_create(state.catalogue, account.premium, params, upload is not None)
    if isinstance(request, Answer):
        return _rejected(state, request)
    limit = state.parallel_limit(account)
    if _over_limit(state, account) and state.options.over_limit == "reject":
        return _rejected(state, error_list(parallel_message(limit)))
    job_dir = state.new_job_dir()
    if upload is not None:
        upload_name = upload.filename or "audio"
        input_path = job_dir / ("input" + PurePosixPath(slugify_name(upload_name)).suffix)
        await run_in_threadpool(_save_upload, upload, input_path)
        problem = await run_in_threadpool(_check_input, state, account, request, input_path)
        if problem is not None:
            shutil.rmtree(job_dir, ignore_errors=True)
            return _rejected(state, problem)
    else:
        upload_name = PurePosixPath(urlsplit(request.url or "").path).name or "remote-audio"
        input_path = job_dir / ("input" + PurePosixPath(slugify_name(upload_name)).suffix)
    job = _register(state, account, request, (upload_name, job_dir, input_path), region)
    if job is None:  # another create took the last slot while this one uploaded
        shutil.rmtree(job_dir, ignore_errors=True)
        return _rejected(state, error_list(parallel_message(limit)))
    home = state.regions.url(region) if region is not None else base_url
    link = f"{home}/api/separation/get?hash={job.hash}"
    return Answer(200, {"success": "true", "data": {"link": link, "hash": job.hash}})


def _over_limit(state: EmulatorState, account: Account) -> bool:
    """Whether a new job would exceed the account's parallel limit (or queue behind others)."""
    state.settle()
    with state.lock:
        queued = any(j.queued for j in state.jobs.values() if j.token == account.token)
        return queued or state.active_jobs(account) >= state.parallel_limit(account)


def _rejected(state: EmulatorState, answer: Answer) -> Answer:
    with state.lock:
        state.stats.creates_rejected += 1
    return answer


def _save_upload(upload: UploadFile, dest: Path) -> None:
    upload.file.seek(0)
    with dest.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


def _check_input(
    state: EmulatorState, account: Account, request: CreateRequest, path: Path
) -> Answer | None:
    """Plan caps (size, duration) and credits; a non-audio file passes (the job fails)."""
    max_bytes, max_seconds = plan_caps(state.options, account.premium)
    size = path.stat().st_size
    if size > max_bytes:
        return error_message(f"The file is too large: {size} bytes; your plan allows {max_bytes}")
    info: AudioInfo | None = probe(path)
    if info is None:
        return None
    if info.duration_s > max_seconds:
        return error_message(
            f"The file is too long: {info.duration_s:.0f} s; your plan allows {max_seconds:.0f} s"
        )
    if account.premium:
        cost = state.cost_of(request.spec, info.duration_s, dict(request.options))
        with state.lock:
            if cost > account.premium_minutes:
                return error_list(f"Not enough premium minutes: {cost} needed")
    return None


def _register(
    state: EmulatorState,
    account: Account,
    request: CreateRequest,
    where: tuple[str, Path, Path],
    region: str | None,
) -> Job | None:
    """Build and register the job, rechecking the parallel limit under the lock.

    Over the limit: None (``over_limit="reject"``), or a job queued for a slot.
    """
    upload_name, job_dir, input_path = where
    info = probe(input_path) if request.url is None else None
    ext = BY_CODE[request.output_format].ext
    with state.lock:
        over = _over_limit(state, account)
        if over and state.options.over_limit == "reject":
            return None
        now = state.clock()
        fault = state.faults.take("create", {"job_failed"})
        job_hash = state.make_hash(account, upload_name)
        base = PurePosixPath(job_hash).stem
        job = Job(
            id=state.next_job_id(),
            hash=job_hash,
            token=account.token,
            upload_name=upload_name,
            type_spec=request.spec,
            options=request.options,
            output_format=request.output_format,
            is_demo=request.is_demo,
            created_at=datetime.strptime(job_hash[:14], "%Y%m%d%H%M%S"),
            created_mono=now,
            slot_mono=None if over else now,
            region=region,
            peaks_len=state.options.peaks_len,
            waiting_s=state.options.waiting_s,
            processing_s=state.job_duration_s(),
            chunk_seconds=state.options.chunk_seconds,
            files_delay_s=state.options.files_delay_s,
            expire_after_s=state.options.expire_after_s,
            job_dir=job_dir,
            input_path=input_path,
            source_url=request.url,
            remote_type=request.remote_type,
            duration_s=info.duration_s if info else None,
            input_size=input_path.stat().st_size if input_path.exists() else 0,
            files=[
                StemOut(key, label, f"{base}_{slugify_name(key)}.{ext}")
                for key, label in request.spec.stems
            ],
        )
        state.register(job, account, fail_message=fault.message if fault else None)
    return job
