"""Inbox folders that are missing now (unmounted shares): their ready jobs wait.

Their jobs are neither prepared nor claimed (no journal churn while a share is away) until
the folder is back, which the scheduler's next pass sees. A stat per inbox per pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import structlog

from daemon.records import Job, JobState

log = structlog.get_logger("daemon.engine")


class MissingRoots:
    """The inbox folders found missing at the last :meth:`check` (each change logged once)."""

    def __init__(self) -> None:
        self.missing: frozenset[Path] = frozenset()

    def check(self, jobs: Iterable[Job]) -> None:
        roots = {job.source.inbox_root for job in jobs if job.state is JobState.READY}
        missing = frozenset(root for root in roots if not root.is_dir())
        for root in missing - self.missing:
            log.warning("inbox folder missing (unmounted share?): its jobs wait", path=str(root))
        for root in self.missing - missing:
            log.info("inbox folder back: its jobs go on", path=str(root))
        self.missing = missing

    def waits(self, job: Job) -> bool:
        """Whether ``job`` is a ready job whose inbox folder is missing."""
        return job.state is JobState.READY and job.source.inbox_root in self.missing
