"""The job's data, as the journal stores it: states, the request, the source, the job.

Plain frozen records, no behaviour beyond JSON round trips; how a job moves between states
is ``daemon.jobs``. Defaults that are settings (``after_success``, ``on_collision``,
``sidecar``) come from ``daemon.config``, the one table of defaults.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from daemon.config import InboxSection

_INBOX = InboxSection.model_fields


class JobState(enum.StrEnum):
    READY = "ready"
    SUBMITTING = "submitting"
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    RETRY_WAIT = "retry_wait"
    HELD = "held"
    """Prepared, not sent: over a credit limit (``daemon.engine.credit_guard``)."""
    FILED = "filed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.FILED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(set(JobState) - TERMINAL_STATES)

AfterSuccess = Literal["archive", "delete", "keep"]
OnCollision = Literal["suffix", "overwrite", "skip"]
CancelProcessing = Literal["discard", "keep"]


@dataclass(frozen=True)
class JobRequest:
    """The exact request sent to MVSEP, snapshotted when the job is journaled."""

    sep_type: int
    options: dict[str, str]
    output_format: int
    algorithm_name: str
    price_coefficient: float = 1.0
    price_multiplier: float = 1.0
    """The chosen options' ``price_rules`` multipliers (the catalogue's, at preset time)."""

    def key(self) -> str:
        """Identity of the request for de-duplication (what MVSEP would compute)."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.sep_type}|{self.output_format}|{opts}"


@dataclass(frozen=True)
class SourceFile:
    """A file the watcher (or the CLI) hands to the engine, with where its results go."""

    path: Path
    inbox: str
    relative_path: str
    preset: str
    request: JobRequest
    output_dir: Path
    output_template: str
    failed_dir: Path
    after_success: AfterSuccess = _INBOX["after_success"].default
    archive_dir: Path | None = None
    on_collision: OnCollision = _INBOX["on_collision"].default
    sidecar: bool = _INBOX["sidecar"].default
    move_failed: bool = True
    """False: a failed input stays where it is (``separate`` never moves the user's files)."""

    @property
    def inbox_root(self) -> Path:
        """The inbox folder the file was found in: ``path`` less ``relative_path``."""
        depth = len(PurePosixPath(self.relative_path).parts)
        return self.path.parents[depth - 1] if depth > 0 else self.path.parent

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        for name in ("path", "output_dir", "failed_dir", "archive_dir"):
            value = data[name]
            data[name] = None if value is None else str(value)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SourceFile:
        req = dict(data["request"])  # type: ignore[call-overload]
        archive = data.get("archive_dir")
        return cls(
            path=Path(str(data["path"])),
            inbox=str(data["inbox"]),
            relative_path=str(data["relative_path"]),
            preset=str(data["preset"]),
            request=JobRequest(
                sep_type=int(req["sep_type"]),
                options={str(k): str(v) for k, v in dict(req["options"]).items()},
                output_format=int(req["output_format"]),
                algorithm_name=str(req["algorithm_name"]),
                price_coefficient=float(req.get("price_coefficient", 1.0)),
                price_multiplier=float(req.get("price_multiplier", 1.0)),
            ),
            output_dir=Path(str(data["output_dir"])),
            output_template=str(data["output_template"]),
            failed_dir=Path(str(data["failed_dir"])),
            after_success=data.get("after_success", cls.after_success),  # type: ignore[arg-type]
            archive_dir=None if archive is None else Path(str(archive)),
            on_collision=data.get("on_collision", cls.on_collision),  # type: ignore[arg-type]
            sidecar=bool(data.get("sidecar", cls.sidecar)),
            move_failed=bool(data.get("move_failed", True)),
        )


@dataclass(frozen=True)
class ResultFile:
    """One output of a finished MVSEP job (or, for a duplicate, an earlier local output)."""

    type: str
    url: str = ""
    download: str = ""
    local: str = ""  # a path to copy from instead of downloading


@dataclass(frozen=True)
class Job:
    """A journaled job: what the journal row holds, as plain data."""

    id: int
    source: SourceFile
    size: int
    mtime: float
    created_at: float
    updated_at: float
    state: JobState = JobState.READY
    sha256: str | None = None
    resume_state: JobState | None = None
    mvsep_status: str | None = None
    mvsep_hash: str | None = None
    nonce: str | None = None
    intent_at: float | None = None
    base_url: str | None = None
    """The MVSEP host the job was created on (journaled with the submit intent): every later
    call for it goes there, whatever the configured ``base_url`` is now (a job lives in the
    region that created it). None: a job journaled before hosts were stored."""
    attempts: int = 0
    first_error_at: float | None = None
    next_attempt_at: float | None = None
    last_error: str | None = None
    cancel_requested: str | None = None
    duplicate_of: int | None = None
    estimated_credits: float | None = None
    used_credits: float | None = None
    result_files: tuple[ResultFile, ...] = ()
    planned_outputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] = ()
    source_disposed: str | None = None

    @property
    def holds_slot(self) -> bool:
        """Whether MVSEP counts this job against the account's parallel limit (maybe)."""
        if self.state in (JobState.SUBMITTING, JobState.QUEUED):
            return True
        return self.state is JobState.RETRY_WAIT and self.resume_state is JobState.SUBMITTING


def result_file_to_json(f: ResultFile) -> dict[str, str]:
    return dataclasses.asdict(f)


def result_file_from_json(data: Mapping[str, str]) -> ResultFile:
    return ResultFile(
        type=str(data.get("type", "")),
        url=str(data.get("url", "")),
        download=str(data.get("download", "")),
        local=str(data.get("local", "")),
    )
