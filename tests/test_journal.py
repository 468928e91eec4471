"""The SQLite journal: real files under tmp_path, real locks, other processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.errors import IllegalTransition, JournalLockedError, JournalVersionError
from daemon.jobs import JobRequest, JobState, ResultFile, SourceFile
from daemon.journal import SCHEMA_VERSION, Journal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def source(tmp_path: Path, name: str = "a.wav") -> SourceFile:
    return SourceFile(
        path=tmp_path / "in" / name,
        inbox="main",
        relative_path=name,
        preset="vocals",
        request=JobRequest(40, {"add_opt1": "3"}, 2, "BS Roformer"),
        output_dir=tmp_path / "out",
        output_template="{name}/{stem}.{ext}",
        failed_dir=tmp_path / "in" / "_failed",
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(tmp_path: Path, clock: FakeClock) -> Journal:
    j = Journal(tmp_path / "journal.sqlite3", clock=clock)
    yield j  # type: ignore[misc]
    j.close()


def test_new_journal_has_current_schema_and_wal(journal: Journal) -> None:
    assert journal.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(journal.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_record_seen_is_idempotent_per_path_size_mtime(journal: Journal, tmp_path: Path) -> None:
    job, created = journal.record_seen(source(tmp_path), size=10, mtime=5.0)
    again, created_again = journal.record_seen(source(tmp_path), size=10, mtime=5.0)
    assert created and not created_again and again.id == job.id
    assert journal.is_known(source(tmp_path).path, 10, 5.0)
    changed, created_changed = journal.record_seen(source(tmp_path), size=11, mtime=6.0)
    assert created_changed and changed.id != job.id
    assert job.state is JobState.READY and job.source == source(tmp_path)


def test_moved_away_source_is_new_when_it_comes_back(journal: Journal, tmp_path: Path) -> None:
    job, _ = journal.record_seen(source(tmp_path), size=10, mtime=5.0)
    journal.mark_failed(job.id, "not audio")
    journal.mark_source_disposed(job.id, "failed:/x/_failed/a.wav")
    assert not journal.is_known(source(tmp_path).path, 10, 5.0)
    _, created = journal.record_seen(source(tmp_path), size=10, mtime=5.0)
    assert created


def test_every_transition_appends_an_event(
    journal: Journal, tmp_path: Path, clock: FakeClock
) -> None:
    job, _ = journal.record_seen(source(tmp_path), size=10, mtime=5.0)
    journal.mark_prepared(job.id, "sha", 1.0)
    claimed = journal.claim_next_ready(lambda: "nonce1")
    assert claimed is not None and claimed.state is JobState.SUBMITTING
    assert claimed.nonce == "nonce1" and claimed.intent_at == clock.now
    assert journal.claim_next_ready(lambda: "nonce2") is None
    clock.now += 1
    journal.mark_submitted(job.id, "20250101-abc-nonce1-a.wav")
    journal.mark_status(job.id, "processing", data={"queue": 1})
    files = [ResultFile(type="Vocals", url="http://x/v", download="v.flac")]
    journal.mark_result_ready(job.id, files)
    journal.mark_outputs_planned(job.id, [tmp_path / "out" / "v.flac"])
    filed = journal.mark_filed(job.id, [tmp_path / "out" / "v.flac"])
    assert filed.state is JobState.FILED and filed.result_files == tuple(files)
    assert filed.planned_outputs == (str(tmp_path / "out" / "v.flac"),)
    kinds = [(e.kind, e.from_state, e.to_state) for e in journal.events(job.id)]
    assert kinds == [
        ("seen", None, "ready"),
        ("prepared", "ready", "ready"),
        ("submit_intent", "ready", "submitting"),
        ("submitted", "submitting", "queued"),
        ("status", "queued", "queued"),
        ("result_ready", "queued", "downloading"),
        ("outputs_planned", "downloading", "downloading"),
        ("filed", "downloading", "filed"),
    ]
    assert journal.events(job.id)[4].data == {"queue": 1}
    with pytest.raises(IllegalTransition):
        journal.mark_failed(job.id, "late")
    assert len(journal.events(job.id)) == 8  # a refused event writes nothing


def test_reads_for_status(journal: Journal, tmp_path: Path) -> None:
    a, _ = journal.record_seen(source(tmp_path, "a.wav"), size=1, mtime=1.0)
    b, _ = journal.record_seen(source(tmp_path, "b.wav"), size=1, mtime=1.0)
    journal.mark_cancelled(b.id, "user")
    counts = journal.counts_by_state()
    assert counts["ready"] == 1 and counts["cancelled"] == 1 and counts["filed"] == 0
    assert [j.id for j in journal.active_jobs()] == [a.id]
    assert {j.id for j in journal.recent_jobs(5)} == {a.id, b.id}
    assert journal.get(a.id).source.path.name == "a.wav"
    assert [e.kind for e in journal.events(limit=2)] == ["seen", "cancelled"]
    with pytest.raises(KeyError):
        journal.get(999)


def test_slots_and_duplicates(journal: Journal, tmp_path: Path) -> None:
    a, _ = journal.record_seen(source(tmp_path, "a.wav"), size=1, mtime=1.0)
    journal.mark_prepared(a.id, "same", None)
    journal.mark_submitting(a.id, "n")
    assert journal.slots_held() == 1
    journal.mark_submitted(a.id, "h")
    journal.mark_result_ready(a.id, [ResultFile(type="Vocals", url="u")])
    assert journal.slots_held() == 0
    journal.mark_outputs_planned(a.id, [tmp_path / "o"])
    journal.mark_filed(a.id, [tmp_path / "o"])
    b, _ = journal.record_seen(source(tmp_path, "b.wav"), size=1, mtime=1.0)
    key = b.source.request.key()
    dup = journal.find_filed_duplicate("same", key, exclude_id=b.id)
    assert dup is not None and dup.id == a.id
    assert journal.find_filed_duplicate("other", key, exclude_id=b.id) is None


def test_request_cancel(journal: Journal, tmp_path: Path) -> None:
    a, _ = journal.record_seen(source(tmp_path, "a.wav"), size=1, mtime=1.0)
    cancelled = journal.request_cancel(a.id, "removed", processing="discard", source_gone=True)
    assert cancelled.state is JobState.CANCELLED and cancelled.source_disposed == "removed"
    b, _ = journal.record_seen(source(tmp_path, "b.wav"), size=1, mtime=1.0)
    journal.mark_prepared(b.id, "x", None)
    journal.mark_submitting(b.id, "n")
    pending = journal.request_cancel(b.id, "user", processing="discard")
    assert pending.state is JobState.SUBMITTING and pending.cancel_requested == "user"


def test_reopen_keeps_everything(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path, clock=clock) as j:
        job, _ = j.record_seen(source(tmp_path), size=3, mtime=2.0)
        j.mark_prepared(job.id, "sha", None)
        j.mark_deferred(job.id, due_at=2000.0, error="503")
    with Journal(path, clock=clock) as j:
        again = j.get(job.id)
        assert (again.state, again.resume_state, again.next_attempt_at) == (
            JobState.RETRY_WAIT,
            JobState.READY,
            2000.0,
        )
        assert len(j.events(job.id)) == 3


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JournalVersionError, match=rf"version 99.*up to version {SCHEMA_VERSION}"):
        Journal(path)
    # the refusal released the lock
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.close()
    Journal(path).close()


def test_migration_from_empty_file_and_idempotent_ddl(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    sqlite3.connect(path).close()  # an empty database at version 0
    with Journal(path) as j:
        assert j.schema_version == SCHEMA_VERSION


def test_second_opener_in_process_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalLockedError, match="in use by another mvsep-watch"):
        Journal(journal.path)


def test_second_opener_in_another_process_is_refused(journal: Journal) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from daemon.errors import JournalLockedError\n"
        "from daemon.journal import Journal\n"
        "try:\n"
        "    Journal(Path(sys.argv[1]))\n"
        "except JournalLockedError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(journal.path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 3, proc.stderr
    import os

    assert f"pid {os.getpid()}" in proc.stdout


def test_lock_is_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    Journal(path).close()


# ---------------------------------------------------------------- schema v2: hosts, poll streaks

V1_JOBS = """CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, source_path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime REAL NOT NULL, sha256 TEXT, inbox TEXT NOT NULL, preset TEXT NOT NULL,
    request_key TEXT NOT NULL, source_json TEXT NOT NULL, state TEXT NOT NULL,
    resume_state TEXT, mvsep_status TEXT, mvsep_hash TEXT, nonce TEXT, intent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0, first_error_at REAL, next_attempt_at REAL,
    last_error TEXT, cancel_requested TEXT, duplicate_of INTEGER REFERENCES jobs(id),
    estimated_credits REAL, used_credits REAL, result_files TEXT NOT NULL DEFAULT '[]',
    planned_outputs TEXT, outputs TEXT NOT NULL DEFAULT '[]', source_disposed TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL)"""


def test_a_version_1_journal_is_migrated_and_its_jobs_keep_going(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A journal written before hosts were stored: its queued job gets ``base_url`` NULL
    (the engine then uses the configured host) and goes on through the new verbs."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(V1_JOBS)
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, at REAL NOT NULL,"
        " kind TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,"
        " reason TEXT NOT NULL DEFAULT '', data TEXT)"
    )
    src = source(tmp_path)
    db.execute(
        "INSERT INTO jobs (source_path, size, mtime, sha256, inbox, preset, request_key,"
        " source_json, state, mvsep_hash, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (str(src.path), 3, 2.0, "sha", "main", "vocals", src.request.key(),
         json.dumps(src.to_json()), "queued", "h-old", 1.0, 1.0),
    )  # fmt: skip
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Journal(path, clock=clock) as j:
        assert j.schema_version == SCHEMA_VERSION == 5
        job = j.get(1)
        assert (job.state, job.mvsep_hash, job.base_url) == (JobState.QUEUED, "h-old", None)
        failed = j.mark_poll_failed(1, due_at=1050.0, error="HTTP 503")
        assert (failed.attempts, failed.first_error_at, failed.next_attempt_at) == (
            1,
            1000.0,
            1050.0,
        )
    with Journal(path, clock=clock) as j:  # the streak was committed
        assert j.get(1).attempts == 1 and j.events(1)[-1].kind == "poll_failed"
        assert j.mark_status(1, "waiting").attempts == 0


def test_the_host_is_journaled_with_the_intent(journal: Journal, tmp_path: Path) -> None:
    job, _ = journal.record_seen(source(tmp_path), size=3, mtime=2.0)
    journal.mark_prepared(job.id, "sha", None)
    claimed = journal.claim_next_ready(lambda: "n1", base_url="http://127.0.0.1:8001")
    assert claimed is not None and claimed.base_url == "http://127.0.0.1:8001"
    journal.mark_submitted(job.id, "h1")
    assert journal.get(job.id).base_url == "http://127.0.0.1:8001"
    other, _ = journal.record_seen(source(tmp_path, "b.wav"), size=3, mtime=2.0)
    journal.mark_prepared(other.id, "sha2", None)
    assert journal.mark_submitting(other.id, "n2", base_url="http://h2").base_url == "http://h2"
    assert journal.mark_reconciled_absent(other.id).base_url is None


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("SELECT * FROM jobs ORDER BY updated_at DESC, id DESC LIMIT 20", "jobs_updated"),
        ("SELECT inbox, state, COUNT(*) FROM jobs GROUP BY inbox, state", "jobs_inbox_state"),
        ("SELECT SUM(used_credits) FROM jobs WHERE intent_at >= 5", "jobs_intent"),
    ],
)
def test_the_queries_of_status_use_an_index(tmp_path: Path, query: str, index: str) -> None:
    """No full sort or scan of a 100,000-job journal for `status` (schema v5)."""
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    with sqlite3.connect(path) as db:
        plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert index in plan, plan
