"""The ``ready`` state's work: sniff the input (a non-audio file fails before any API call),
hash it, de-duplicate it, estimate its credits. A recently changed cut-off WAV/AIFF waits
for the rest of its copy; a missing input whose whole inbox is missing waits for the share.
Then the scheduler claims a slot for it (``submitting``, ``daemon.engine.submit``).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

from daemon.engine.context import Context, ids, log, record_error, wait_for_missing_folder
from daemon.engine.dispose import fail
from daemon.engine.identity import open_as_seen, sha256_of_handle
from daemon.engine.retry import Step
from daemon.jobs import Job, JobState, ResultFile

TWIN_RECHECK_S = 5.0
"""How often a job waiting for an unfinished twin (same audio, same request) looks again."""

_TWINS = threading.Lock()
"""Held from "is there an unfinished twin?" to ``mark_prepared``: of two identical files
prepared at once, exactly one is sent."""


def estimate_credits(
    duration_s: float | None, price_coefficient: float, price_multiplier: float = 1.0
) -> float | None:
    """MVSEP's premium price: ``max(1, floor(minutes × price_coefficient × the chosen
    options' price_rules multipliers))``."""
    if duration_s is None:
        return None
    return float(max(1, math.floor(duration_s * price_coefficient * price_multiplier / 60)))


def prepare(ctx: Context, job: Job) -> None:
    """Sniff (a non-audio file fails before any API call), hash, de-duplicate."""
    src = job.source.path
    if not src.is_file():
        _input_missing(ctx, job)
        return
    probe = ctx.probe(src)
    if not probe.ok and not src.is_file():  # it vanished while being read: not bad audio
        _input_missing(ctx, job)
        return
    if not probe.ok:
        if probe.cut_off and _wait_for_copy(ctx, job, str(probe.reason)):
            return
        fail(ctx, job, f"not an audio file: {probe.reason}")
        return
    try:
        digest = _hash_as_seen(ctx, job)
    except FileNotFoundError:
        _input_missing(ctx, job)
        return
    except OSError as exc:
        after = record_error(ctx, job, exc, step=Step.PREPARE)
        if after.state is JobState.RETRY_WAIT:  # a failure of this try (failed logs its own)
            log.warning("input could not be read; trying again later", **ids(job),
                        error=after.last_error, attempt=after.attempts)  # fmt: skip
        return
    if digest is None:
        return
    req = job.source.request
    credits = estimate_credits(probe.duration_s, req.price_coefficient, req.price_multiplier)
    if not ctx.settings.dedupe_same_content:
        ctx.journal.mark_prepared(job.id, digest, credits)
        return
    if _file_duplicate(ctx, job, digest):
        return
    with _TWINS:
        twin = _unfinished_twin(ctx, job, digest)
        if twin is None:
            ctx.journal.mark_prepared(job.id, digest, credits)
            return
    _wait_for_twin(ctx, job, twin)


def _hash_as_seen(ctx: Context, job: Job) -> str | None:
    """The sha256 of the very file the job saw; None (and the job superseded) when another
    file is at its path now: the hash and the job's size and mtime are of one version."""
    handle = open_as_seen(job)
    if handle is None:
        superseded(ctx, job)
        return None
    with handle:
        return sha256_of_handle(job.source.path, handle)


def superseded(ctx: Context, job: Job) -> None:
    """Another file was put at the job's path before anything was sent: this job ends
    (nothing spent); the new version is its own job (the watcher reports every change)."""
    reason = "superseded: another file was put at its path before it was sent (nothing sent)"
    ctx.journal.mark_cancelled(job.id, reason)


def _unfinished_twin(ctx: Context, job: Job, digest: str) -> Job | None:
    """An active job with the same audio and request, prepared or sent (issue 9 item 2):
    this one waits for its result instead of paying for the same separation twice."""
    key = job.source.request.key()
    for other in ctx.journal.active_jobs():
        if (
            other.id != job.id
            and other.sha256 == digest
            and other.cancel_requested is None
            and other.source.request.key() == key
        ):
            return other
    return None


def _wait_for_twin(ctx: Context, job: Job, twin: Job) -> None:
    """Not sent: looked at again until the twin is filed (then filed from its result, as a
    duplicate of a finished job) or ends without a result (then sent itself)."""
    text = (
        f"the same audio with the same request is job {twin.id} (not finished yet): "
        "waiting for its result instead of paying twice"
    )
    due = ctx.clock.time() + TWIN_RECHECK_S
    ctx.journal.mark_deferred(job.id, due_at=due, error=text, recheck=True)  # not an attempt
    log.info("same audio as an unfinished job: waiting for it", **ids(job), twin=twin.id)


def _input_missing(ctx: Context, job: Job) -> None:
    """The input is gone: its share is unmounted (wait for it) or its owner removed it."""
    if not wait_for_inbox(ctx, job, resume=None):  # removed by its owner: nothing spent
        ctx.journal.mark_cancelled(
            job.id, f"the input {job.source.path} was removed before it was sent"
        )


def wait_for_inbox(ctx: Context, job: Job, *, resume: JobState | None) -> bool:
    """The input is missing. If its whole inbox folder is missing too, the share is
    unmounted (a NAS rebooting, a disk asleep): the job waits for it, never cancelled or
    failed for it. True if the job was deferred; False means the file alone was removed."""
    root = job.source.inbox_root
    if root.is_dir():
        return False
    reason = f"the inbox folder {root} is missing (unmounted share?): waiting for it to come back"
    wait_for_missing_folder(ctx, job, reason, resume=resume)
    return True


def _wait_for_copy(ctx: Context, job: Job, reason: str) -> bool:
    """A cut-off file that changed recently may still be arriving: check it again later.

    True if the job was deferred. When the copy goes on, the watcher reports the new version
    and the engine supersedes this job; when nothing changes for ``cut_off_wait_s``, the file
    is damaged and fails.
    """
    try:
        age = ctx.clock.time() - job.source.path.stat().st_mtime
    except OSError:
        return False
    wait_s = ctx.settings.cut_off_wait_s
    if age >= wait_s:
        return False
    due = ctx.clock.time() + min(ctx.settings.cut_off_recheck_s, wait_s - age)
    text = (
        f"{reason}; it changed {age:.0f} s ago, so a copy may still be under way: checked "
        f"again until it has been unchanged for {wait_s:.0f} s"
    )
    ctx.journal.mark_deferred(job.id, due_at=due, error=text, recheck=True)  # not an attempt
    log.info("input looks cut off, waiting", **ids(job), age_s=age)
    return True


def _file_duplicate(ctx: Context, job: Job, digest: str) -> bool:
    earlier = ctx.journal.find_filed_duplicate(digest, job.source.request.key(), exclude_id=job.id)
    if earlier is None or len(earlier.outputs) != len(earlier.result_files):
        return False
    if not earlier.outputs or not all(Path(p).is_file() for p in earlier.outputs if p):
        return False
    files = tuple(
        ResultFile(type=f.type, download=f.download, local=out)
        for f, out in zip(earlier.result_files, earlier.outputs, strict=True)
        if out
    )
    if not files:
        return False
    ctx.journal.mark_duplicate(job.id, of_job=earlier.id, files=files, sha256=digest)
    return True
