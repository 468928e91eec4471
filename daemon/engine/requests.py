"""Requests of the commands (``jobs retry / cancel / forget``), carried out by the daemon.

A command does not write jobs: it writes a row into the journal's ``requests`` table
(``daemon.journal.control.post_request``). The scheduler's tick calls :meth:`Requests.tick`,
which hands each new request to the worker pool (a retry may ask MVSEP whether the job's
result is still there) and writes its outcome back, ``done`` or ``refused`` with one line
for the person who asked. New rows wake the scheduler, whose pass may otherwise sleep up
to 30 s: a look is made when a command closes its journal connection (an inotify event,
:mod:`~daemon.engine.journal_poke`; without inotify, once a second), and asks the journal
only when its files changed (:func:`~daemon.idle.files_stamp`: a ``stat`` of the journal
and its WAL, which a commit changes); every :data:`~daemon.idle.LONGEST_IDLE_S` it asks
anyway. Idle, nothing wakes. With no daemon running a request waits in the journal for
the next start, whose first pass carries it out.

Retry of a failed job: its input goes back from the failed folder to its inbox path (its
``NAME.error.txt`` is removed), and the job starts again where nothing is paid twice: a
result MVSEP still has is downloaded (``downloading``), a job MVSEP still works on is
polled (``queued``); otherwise (it failed at MVSEP, its result is gone, it was never
created) it is sent again from the start (``ready``).
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from daemon import filing
from daemon.engine.context import Context, log
from daemon.engine.journal_poke import JournalPoke
from daemon.errors import ApiNotFound, IllegalTransition, JournalError, RetryLater
from daemon.idle import LONGEST_IDLE_S, Stamp, files_stamp, journal_files
from daemon.jobs import Job, JobState, ResultFile
from daemon.journal.control import RequestRow

LOOK_S = 1.0
"""How often the journal's files are looked at for new requests without inotify."""
_IN_PLACE = ("kept", "left")


class Refused(Exception):
    """A request that cannot be carried out; its message is the answer."""


class Requests:
    """The requests of the commands: looked for, carried out once each, answered."""

    def __init__(self, ctx: Context, *, cancel: Callable[[int, str], None]) -> None:
        self._ctx = ctx
        self._cancel = cancel
        self._lock = threading.Lock()
        self._busy: set[int] = set()  # started (and answered) by this engine
        self._thread: threading.Thread | None = None

    def start(self, wake: Callable[[], None]) -> None:
        """Look for new requests (see the module docstring) until the engine stops."""
        if self._thread is not None:  # a stop woke it and it ends (two would only both wake)
            self._thread.join(2 * LOOK_S)
        self._thread = threading.Thread(
            target=self._look, args=(wake,), name="mvsep-requests", daemon=True
        )
        self._thread.start()

    def _look(self, wake: Callable[[], None]) -> None:
        stopping, journal = self._ctx.stopping, self._ctx.journal
        files = journal_files(journal.path)
        seen: Stamp | None = None
        settled = False  # ``seen`` held across two looks: a commit under way is done
        lock = threading.Lock()  # the poke's thread and this one

        def look(force: bool) -> bool:
            """Wake the engine for a request it has not started; False: journal closed.
            A stamp read while another connection's commit is being written can already
            show its WAL frames before the commit is visible to a query: so after a change
            the next look asks once more, and a poke (a writer closed) always asks."""
            nonlocal seen, settled
            with lock:
                stamp = files_stamp(files)  # before the query: a commit after it is seen
                if stamp == seen and settled and not force:
                    return True  # nothing was committed since the last look: no query
                settled = stamp == seen
                seen = stamp
                try:
                    pending = {r.id for r in journal.pending_requests()}
                except JournalError:  # closed or gone: the engine stops too
                    return False
            with self._lock:
                new = pending - self._busy
            if new:
                wake()
            return True

        poke = JournalPoke(journal.path)
        every_s = LONGEST_IDLE_S if poke.start(functools.partial(look, True)) else LOOK_S
        asked_at = time.monotonic()
        try:
            while not stopping.wait(every_s):
                now = time.monotonic()
                force = now - asked_at >= LONGEST_IDLE_S  # a safety net under the stamp
                asked_at = now if force else asked_at
                if not look(force):
                    return
        finally:
            poke.stop()

    def tick(self, pool: Executor | None) -> None:
        """Start each pending request not yet started (inline without a pool)."""
        for request in self._ctx.journal.pending_requests():
            with self._lock:
                if request.id in self._busy:
                    continue
                self._busy.add(request.id)
            if pool is None:
                self._run(request)
                continue
            try:
                pool.submit(self._run, request)
            except RuntimeError:  # the pool shut down meanwhile: the next start does it
                with self._lock:
                    self._busy.discard(request.id)

    def _run(self, request: RequestRow) -> None:
        fields = {"request_id": request.id, "action": request.action, "job_id": request.job_id}
        try:
            ok, text = True, self._carry_out(request)
        except (Refused, IllegalTransition) as exc:
            ok, text = False, str(exc)
        except KeyError:
            ok, text = False, f"no job {request.job_id} in the journal"
        except Exception as exc:  # a bug, or the disk: answered, never left pending
            log.exception("request failed", **fields)
            ok, text = False, f"{request.action} failed: {exc}"
        # its id stays in _busy: a pass that read the pending rows before this answer was
        # written must not carry it out a second time
        self._ctx.journal.finish_request(request.id, ok=ok, result=text)
        level = log.info if ok else log.warning
        level("request carried out" if ok else "request refused", **fields, result=text)

    def _carry_out(self, request: RequestRow) -> str:
        job = self._ctx.journal.get(request.job_id)
        if request.action == "cancel":
            return self._cancel_job(job)
        if request.action == "forget":
            return forget(self._ctx, job)
        if request.action == "retry":
            return retry(self._ctx, job)
        raise Refused(f"unknown request {request.action!r}")

    def _cancel_job(self, job: Job) -> str:
        if job.state.is_terminal:
            raise Refused(f"job {job.id} is already {job.state}")
        self._cancel(job.id, "cancelled by `mvsep-watch jobs cancel`")
        now = self._ctx.journal.get(job.id)
        if now.state is JobState.CANCELLED:
            return f"job {job.id} cancelled ({job.state} before: nothing more is paid)"
        if now.cancel_requested is not None:
            return (
                f"job {job.id}: cancel requested; it is cancelled at MVSEP at its next poll "
                "while it waits there (refunded), or per on_cancel_processing once processing"
            )
        return f"job {job.id} is {now.state} already: its result is kept (on_cancel_processing)"


def forget(ctx: Context, job: Job) -> str:
    """Delete a finished job and its history from the journal."""
    ctx.journal.forget_job(job.id)
    text = f"job {job.id} ({job.state}, {job.source.path}) and its history forgotten"
    if job.source_disposed in (None, *_IN_PLACE) and job.source.path.exists():
        text += f"; its input is still at {job.source.path}: the next rescan takes it as new"
    return text


def failed_input(job: Job) -> Path:
    """Where a failed job's input is now (the failed folder, or left in place)."""
    how = job.source_disposed or ""
    if how.startswith("failed:"):
        where = Path(how.removeprefix("failed:"))
    elif how in _IN_PLACE:
        where = job.source.path
    else:
        why = "its failed input is still being moved" if not how else f"its input is {how}"
        raise Refused(f"job {job.id}: {why}; drop the file into its inbox again instead")
    if not where.exists():
        raise Refused(f"job {job.id}: its input is no longer at {where}; drop it in again")
    return where


def retry(ctx: Context, job: Job) -> str:
    """Put a failed job's input back and start the job again (see the module docstring)."""
    if job.state is not JobState.FAILED:
        raise Refused(f"job {job.id} is {job.state}: only a failed job can be retried")
    source = failed_input(job)
    dest = job.source.path
    if source != dest and (dest.exists() or dest.is_symlink()):
        raise Refused(f"job {job.id}: another file is at {dest} now; move it away first")
    to, files, how = where_to_go_on(ctx, job)
    ctx.journal.retry_failed(
        job.id,
        to=to,
        files=files,
        restore=lambda j: put_back(source, dest, inbox_root=j.source.inbox_root),
        reason=f"retried by `mvsep-watch jobs retry`: {how}",
    )
    moved = f"put back at {dest}; " if source != dest else ""
    return f"job {job.id} {moved}{how}"


def where_to_go_on(ctx: Context, job: Job) -> tuple[JobState, tuple[ResultFile, ...], str]:
    """Which state a retried job starts in, asking MVSEP about a job it has (one ``get``)."""
    if job.mvsep_hash is None:
        return JobState.READY, (), "started again from the beginning (it never reached MVSEP)"
    try:
        status = ctx.client_for(job).get(job.mvsep_hash)
    except ApiNotFound:
        return JobState.READY, (), "sent to MVSEP again (its result there is gone)"
    except RetryLater as exc:
        raise Refused(f"job {job.id}: MVSEP cannot be asked now ({exc}); try again later") from exc
    if status.is_finished:
        files = tuple(ResultFile(type=f.type, url=f.url, download=f.download or "")
                      for f in status.files)  # fmt: skip
        return (
            JobState.DOWNLOADING,
            files,
            (f"downloads its result from MVSEP again (hash {job.mvsep_hash}: nothing paid twice)"),
        )
    if status.is_failed:
        return JobState.READY, (), "sent to MVSEP again (it failed there)"
    return JobState.QUEUED, (), f"MVSEP still has it ({status.status}): polled again"


def put_back(source: Path, dest: Path, *, inbox_root: Path) -> Path:
    """Move ``source`` to ``dest`` without ever replacing a file there; the failed folder's
    ``NAME.error.txt`` goes. A missing inbox (an unmounted share) is not made anew."""
    if source == dest:
        return dest
    if not inbox_root.is_dir():
        raise Refused(f"the inbox folder {inbox_root} is missing (an unmounted share?)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)  # fails if anything is there: never overwrites
        os.unlink(source)
    except FileExistsError:
        raise Refused(f"another file is at {dest} now; move it away first") from None
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
        if dest.exists():
            raise
        shutil.move(source, dest)  # another filesystem: copy (mtime kept), then delete
    filing.error_path(source).unlink(missing_ok=True)
    return dest
