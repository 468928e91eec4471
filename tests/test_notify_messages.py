"""A "separated" message names what the job cost: charged when known, else the estimate.

Credits are read from MVSEP's history in batches after filing (daemon/engine/credits.py), so
the message staged when a job is filed usually has only the estimate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from notify_rig import file_job

from daemon.journal import Journal
from daemon.notify.messages import job_message


def test_the_message_gives_the_charged_credits_else_the_estimate(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        job = file_job(journal, tmp_path)
    assert job.used_credits == 2.0 and job.estimated_credits == 1.0
    assert job_message(job, "done", "").body.endswith("; 2 credits")
    not_read = dataclasses.replace(job, used_credits=None)
    assert job_message(not_read, "done", "").body.endswith("; about 1 credits (estimated)")
    unknown = dataclasses.replace(not_read, estimated_credits=None)
    assert "credits" not in job_message(unknown, "done", "").body
