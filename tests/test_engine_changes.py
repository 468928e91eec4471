"""The log line of each journaled change: failures at WARNING, one meaning per key.

Before, every change was logged at INFO with its journal detail under ``reason``, so `job
seen` carried a path and `job source_disposed` "archived:/path" as its reason.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from daemon.engine.changes import change_fields, change_level
from daemon.records import Job, JobState
from tests.test_jobs import SOURCE

JOB = Job(id=7, source=SOURCE, size=10, mtime=1.0, created_at=0.0, updated_at=0.0)


@pytest.mark.parametrize(
    ("kind", "detail", "expected"),
    [
        ("seen", "/in/a.wav", {"path": "/in/a.wav"}),
        (
            "source_disposed",
            "archived:/in/_processed/a.wav",
            {"disposed": "archived", "path": "/in/_processed/a.wav"},
        ),
        ("source_disposed", "kept", {"disposed": "kept"}),
        ("failed", "MVSEP said no", {"reason": "MVSEP said no"}),
        ("retry_wait", "HTTP 503", {"reason": "HTTP 503"}),
        ("submitted", "20261202-abc-a.wav", {"hash": "20261202-abc-a.wav"}),
        ("status", "waiting", {"mvsep_status": "waiting"}),
        ("submit_intent", "n0nce", {"nonce": "n0nce"}),
        ("poll_failed", "HTTP 503", {"error": "HTTP 503"}),
        ("prepared", "", {}),
    ],
)
def test_each_detail_lands_under_the_key_that_means_it(
    kind: str, detail: str, expected: dict[str, object]
) -> None:
    fields = change_fields(JOB, kind, detail)
    assert fields == {"job_id": 7, "file": "/in/a.wav", "state": "ready", **expected}


def test_job_filed_lists_the_stem_paths() -> None:
    filed = dataclasses.replace(JOB, state=JobState.FILED, outputs=("/out/a/Vocals.flac",))
    fields = change_fields(filed, "filed", "")
    assert fields["path"] == ["/out/a/Vocals.flac"]
    assert "reason" not in fields


@pytest.mark.parametrize(
    ("kind", "level"),
    [("failed", logging.WARNING), ("filed", logging.INFO), ("cancelled", logging.INFO)],
)
def test_failures_are_warnings(kind: str, level: int) -> None:
    assert change_level(kind) == level
