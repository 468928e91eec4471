"""`mvsep-watch separate FILE...`: the one-shot command, through the same journal and engine.

Because it runs through the journal, re-running the same command after a crash (or Ctrl-C)
resumes the jobs it knows instead of paying for them again. Ctrl-C cancels only the jobs
that have not started at MVSEP: not yet sent, or still waiting there (MVSEP's cancel takes
only those, and refunds them). Every other job (being sent, processing or done at MVSEP,
downloading) is left as it is: the next run of the same command downloads it, without a
second create. It asks MVSEP itself, never a status the journal saw earlier.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from daemon.catalogue import Catalogue
from daemon.config import OPTION_NUMBERS, PresetSection, Settings, load_settings
from daemon.engine import Engine
from daemon.errors import ApiError, ApiNotFound, ApiRejected, ConfigError, Stopping
from daemon.jobs import Job, JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.service import (
    ENGINE_STOP_S,
    engine_settings,
    load_catalogue,
    make_client,
    open_journal,
    poll_policy,
    premium_of,
    to_request,
)

SEPARATE_TEMPLATE = "{name}/{name} - {stem}.{ext}"
TERMINAL = {JobState.FILED, JobState.FAILED, JobState.CANCELLED}


def load_separate_settings(args: argparse.Namespace) -> Settings:
    """The config file when there is one (or --config names one), else defaults + env."""
    if args.no_config:
        settings = _defaults_from_env()
    else:
        try:
            settings, _ = load_settings(args.config, require_token=False)
        except ConfigError as exc:
            if args.config or not exc.problems[0].endswith(_NOT_FOUND_HINT):
                raise
            settings = _defaults_from_env()
    if args.base_url:
        mvsep = settings.mvsep.model_copy(update={"base_url": args.base_url.rstrip("/")})
        settings = settings.model_copy(update={"mvsep": mvsep})
    if not settings.token():
        raise ConfigError(
            "no API token — set $MVSEP_API_TOKEN, or [mvsep] api_token_file / api_token in "
            "the config file"
        )
    return settings


_NOT_FOUND_HINT = "or pass --config PATH / set MVSEP_WATCH_CONFIG"


def _defaults_from_env() -> Settings:
    import tempfile

    empty = Path(tempfile.mkdtemp(prefix="mvsep-watch-")) / "empty.toml"
    empty.write_text("", encoding="utf-8")
    try:
        settings, _ = load_settings(empty, require_token=False)
    finally:
        empty.unlink()
        empty.parent.rmdir()
    return settings


def requested_preset(args: argparse.Namespace, settings: Settings) -> tuple[str, PresetSection]:
    """--preset NAME from the config, or one built from --sep-type/--optN/--format."""
    if args.preset:
        if args.preset not in settings.presets:
            known = ", ".join(sorted(settings.presets)) or "none in the config"
            raise ConfigError(f"--preset: no preset {args.preset!r} (known: {known})")
        preset = settings.presets[args.preset]
        if args.output_format:
            preset = preset.model_copy(update={"output_format": args.output_format})
        return args.preset, preset
    if not args.sep_type:
        raise ConfigError("give --preset NAME or --sep-type N (a number or an algorithm name)")
    sep_type: int | str = int(args.sep_type) if args.sep_type.isdigit() else args.sep_type
    options = {f"add_opt{n}": getattr(args, f"opt{n}", None) for n in OPTION_NUMBERS}
    preset = PresetSection(
        sep_type=sep_type,
        output_format=args.output_format or "flac16",
        **{k: v for k, v in options.items() if v is not None},
    )
    return "command-line", preset


def resolve(
    catalogue: Catalogue, name: str, preset: PresetSection, premium: bool | None
) -> JobRequest:
    resolved = catalogue.resolve(
        sep_type=preset.sep_type,
        options=preset.options(),
        output_format=preset.output_format,
        premium=premium,
        where=f"separate [{name}]",
    )
    return to_request(resolved)


def source_for(path: Path, *, preset: str, request: JobRequest, out: Path) -> SourceFile:
    return SourceFile(
        path=path,
        inbox="separate",
        relative_path=path.name,
        preset=preset,
        request=request,
        output_dir=out,
        output_template=SEPARATE_TEMPLATE,
        failed_dir=out / "_failed",
        after_success="keep",
        on_collision="suffix",
        sidecar=True,
        move_failed=False,
    )


class ProgressPrinter:
    """Turns engine progress into short lines on stderr (one per change, not per byte)."""

    def __init__(self, names: Mapping[int, str] | None = None, stream: TextIO = sys.stderr):
        self.names: dict[int, str] = dict(names or {})
        self._stream = stream
        self._last: dict[tuple[int, str], str] = {}

    def __call__(self, job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        text = describe_progress(kind, data)
        if text is None or self._last.get((job_id, kind)) == text:
            return
        self._last[(job_id, kind)] = text
        name = self.names.get(job_id, f"job {job_id}")
        print(f"{name}: {text}", file=self._stream, flush=True)


def describe_progress(kind: str, data: Mapping[str, Any]) -> str | None:
    if kind == "upload":
        return f"uploading {_percent(data.get('sent'), data.get('total'))}"
    if kind == "download":
        stem = data.get("stem") or data.get("type") or "stem"
        return f"downloading {stem} {_percent(data.get('received'), data.get('total'))}"
    if kind == "queue":
        return _describe_queue(data)
    if kind == "state":
        state = data.get("state")
        reason = data.get("reason")
        return f"{state}" + (f" ({reason})" if reason else "")
    return None


def _describe_queue(data: Mapping[str, Any]) -> str:
    status = str(data.get("status") or "")
    if data.get("all_chunks"):
        return f"{status}: chunk {data.get('finished_chunks') or 0}/{data.get('all_chunks')}"
    if data.get("current_order") is not None:
        return f"{status}: position {data.get('current_order')} in the queue"
    return status


def _percent(done: Any, total: Any) -> str:
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        # in steps of 10% so the output stays readable
        return f"{min(100, done * 100 // total) // 10 * 10}%"
    return ""


def run_separate(args: argparse.Namespace, *, configure: Callable[[Settings], None]) -> int:
    settings = load_separate_settings(args)
    configure(settings)
    files = [Path(os.path.abspath(f)) for f in args.files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError([f"{m}: no such file" for m in missing])
    name, preset = requested_preset(args, settings)
    out = Path(os.path.abspath(args.out))
    out.mkdir(parents=True, exist_ok=True)
    journal_path = args.journal or settings.journal.path.with_name("separate.sqlite")
    client = make_client(settings)
    try:
        premium = premium_of(client)  # a refused token first: exit 2, one line
        catalogue = load_catalogue(settings, client)
        request = resolve(catalogue, name, preset, premium)
        with open_journal(journal_path, where="separate --journal") as journal:
            return _separate(settings, client, journal, files, name, request, out)
    finally:
        client.close()


def _separate(
    settings: Settings,
    client: Any,
    journal: Journal,
    files: list[Path],
    name: str,
    request: JobRequest,
    out: Path,
) -> int:
    printer = ProgressPrinter()
    engine = Engine(
        journal=journal,
        client=client,
        # files named on the command line are complete: a cut-off one is damaged, not arriving
        settings=dataclasses.replace(engine_settings(settings), cut_off_wait_s=0.0),
        poll_policy=poll_policy(settings),
        on_progress=printer,
    )
    ids: dict[Path, int] = {}
    for path in files:
        engine.submit_file(source_for(path, preset=name, request=request, out=out))
        job = _latest_job_for(journal, path)
        ids[path] = job.id
        printer.names[job.id] = path.name
        _keep_interrupted(journal, job)
    try:
        engine.run_until_idle()
    except KeyboardInterrupt:
        # a worker still inside a request after a few seconds is left behind (the CLI's
        # Ctrl-C leaves without it): its job is in the journal and resumes on the rerun
        engine.stop(timeout_s=ENGINE_STOP_S)
        _interrupt(client, journal, ids)
        raise
    except BaseException:
        engine.stop(timeout_s=10.0)
        raise
    engine.stop(timeout_s=10.0)
    return _report(journal, ids)


INTERRUPTED = "interrupted (Ctrl-C)"


def _keep_interrupted(journal: Journal, job: Job) -> None:
    """A cancel request an earlier Ctrl-C left on a job already at MVSEP (journals of
    earlier versions did): running the command again means "resume it", so it is dropped."""
    pending = job.cancel_requested is not None and job.cancel_requested.startswith(INTERRUPTED)
    if pending and job.state in (JobState.SUBMITTING, JobState.QUEUED, JobState.RETRY_WAIT):
        journal.mark_cancel_declined(job.id, "the command was run again: resumed")


def _latest_job_for(journal: Journal, path: Path) -> Job:
    active = journal.active_for_path(path)
    if active:
        return active[-1]
    jobs = [j for j in journal.recent_jobs(10_000) if j.source.path == path]
    return max(jobs, key=lambda j: j.id)


def _interrupt(client: Any, journal: Journal, ids: Mapping[Path, int]) -> None:
    """Ctrl-C, the engine stopped: cancel what has not started at MVSEP (refunded), leave
    the rest resumable, and say which is which."""
    cancelled: list[str] = []
    resumable: list[str] = []
    for path, job_id in ids.items():
        job = journal.get(job_id)
        if job.state in TERMINAL:
            continue
        outcome = _cancel_if_not_started(client, journal, job)
        if outcome is None:
            cancelled.append(path.name)
        else:
            resumable.append(f"{path.name} ({outcome})")
    print(interrupt_message(cancelled, resumable), file=sys.stderr, flush=True)


def interrupt_message(cancelled: list[str], resumable: list[str]) -> str:
    lines = ["interrupted."]
    if cancelled:
        lines.append("cancelled, not started at MVSEP (nothing charged): " + ", ".join(cancelled))
    if resumable:
        lines.append(
            "kept (already sent to MVSEP; run the same command again to download the "
            "results without paying again): " + ", ".join(resumable)
        )
    return "\n".join(lines)


def _cancel_if_not_started(client: Any, journal: Journal, job: Job) -> str | None:
    """Cancel ``job`` if it has not started at MVSEP (``None``); else why it is kept."""
    resume = job.resume_state if job.state is JobState.RETRY_WAIT else job.state
    not_sent = resume in (JobState.READY, JobState.HELD)  # held: over a credit limit
    if not_sent or (job.state is JobState.RETRY_WAIT and resume is None):
        journal.mark_cancelled(job.id, f"{INTERRUPTED}: not sent to MVSEP")
        return None
    if job.state is JobState.QUEUED and job.mvsep_hash is not None:
        try:
            message = client.cancel(job.mvsep_hash)
        except (ApiRejected, ApiNotFound):  # started (or done) meanwhile: not cancellable
            return "started at MVSEP"
        except (ApiError, Stopping) as exc:
            return f"MVSEP could not be asked to cancel it: {exc}"
        reason = f"{INTERRUPTED}: cancelled at MVSEP before it started ({message})"
        journal.mark_cancelled(job.id, reason)
        return None
    if resume is JobState.DOWNLOADING:
        return "done at MVSEP, downloading"
    return "being sent to MVSEP"


def _report(journal: Journal, ids: Mapping[Path, int]) -> int:
    failures = 0
    for path, job_id in ids.items():
        job = journal.get(job_id)
        if job.state == JobState.FILED:
            print(f"{path.name}: {len(job.outputs)} stem(s)")
            for output in job.outputs:
                print(f"  {output}")
        else:
            failures += 1
            print(f"{path.name}: {job.state}: {job.last_error or ''}".rstrip(": "))
    return 0 if failures == 0 else 1
