"""/metrics from a real journal: exact values, parsed by prometheus_client's own parser.

A real SQLite journal under tmp_path, jobs driven through the journal's verbs with a
ManualClock (so every event time, hence every duration, is exact), rendered by
``daemon.metrics.render`` and read back with ``text_string_to_metric_families``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.clock import ManualClock
from daemon.jobs import JobRequest, ResultFile, SourceFile
from daemon.journal import INBOX_NOTE, Journal
from daemon.metrics import FAILURE_CLASSES, OTHER_FAILURE, LiveStats, day_start, render

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SECRET_PATH = "private-folder-9f3c"


def samples(body: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def source(tmp_path: Path, inbox: str, name: str) -> SourceFile:
    path = tmp_path / inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    request = JobRequest(sep_type=40, options={}, output_format=1, algorithm_name="BS Roformer")
    return SourceFile(
        path=path, inbox=inbox, relative_path=name, preset="v", request=request,
        output_dir=tmp_path / "out", output_template="{name}/{stem}.{ext}",
        failed_dir=tmp_path / "_failed",
    )  # fmt: skip


class Jobs:
    """Drives jobs through the journal's verbs, the clock moved between them."""

    def __init__(self, journal: Journal, clock: ManualClock, tmp_path: Path) -> None:
        self.journal, self.clock, self.tmp_path = journal, clock, tmp_path

    def seen(self, inbox: str, name: str) -> int:
        job, _ = self.journal.record_seen(source(self.tmp_path, inbox, name), size=12, mtime=1.0)
        return job.id

    def submitted(self, job_id: int, *, estimate: float | None, after_s: float = 0) -> None:
        self.journal.mark_prepared(job_id, f"sha-{job_id}", estimate)
        self.clock.advance(after_s)
        self.journal.mark_submitting(job_id, f"nonce-{job_id}")
        self.journal.mark_submitted(job_id, f"hash-{job_id}")

    def filed(self, job_id: int, *, processing_s: float, filing_s: float) -> None:
        self.clock.advance(processing_s)
        stem = ResultFile(type="vocals", url="http://127.0.0.1/x", download="x.wav")
        self.journal.mark_result_ready(job_id, [stem])
        self.clock.advance(filing_s)
        out = self.tmp_path / "out" / f"{job_id}.wav"
        self.journal.mark_outputs_planned(job_id, [out])
        self.journal.mark_filed(job_id, [out])


@pytest.fixture
def midnight() -> float:
    return day_start(1_750_000_000.0)


@pytest.fixture
def journal_path(tmp_path: Path, midnight: float) -> Path:
    """A journal: inbox music (filed, ready, failed not audio, queued, one submitted
    yesterday and filed) and inbox voice (failed at MVSEP, failed with a path in its
    reason); the watcher's note for music (polling, 2 missed)."""
    path = tmp_path / "journal.sqlite"
    clock = ManualClock(wall_start=midnight - 7200)  # two hours before midnight
    with Journal(path, clock=clock) as journal:
        jobs = Jobs(journal, clock, tmp_path)
        old = jobs.seen("music", "yesterday.wav")
        jobs.submitted(old, estimate=5.0, after_s=10)
        journal.mark_credits(old, 6.0)
        jobs.filed(old, processing_s=500, filing_s=20)  # drop to filed: 530 s
        clock.advance(7200)  # past midnight
        filed = jobs.seen("music", "a.wav")
        jobs.submitted(filed, estimate=3.0, after_s=20)
        journal.mark_credits(filed, 2.5)
        jobs.filed(filed, processing_s=60, filing_s=20)  # drop to filed: 100 s
        jobs.seen("music", "b.wav")
        bad = jobs.seen("music", "c.wav")
        journal.mark_failed(bad, "not an audio file: a text file named .wav")
        queued = jobs.seen("music", "d.wav")
        jobs.submitted(queued, estimate=4.0)
        at_mvsep = jobs.seen("voice", "e.wav")
        jobs.submitted(at_mvsep, estimate=None)
        journal.mark_failed(at_mvsep, "MVSEP failed the separation: boom")
        odd = jobs.seen("voice", "f.wav")
        journal.mark_failed(odd, f"something new about /srv/{SECRET_PATH}/f.wav")
        note = {"mode": "polling", "reason": "a rescan found x", "paused": None, "missed": 2}
        journal.set_note(INBOX_NOTE + "music", json.dumps(note))
    return path


def render_at(path: Path, midnight: float, live: LiveStats | None = None) -> bytes:
    with Journal(path) as journal:
        body, content_type = render(journal, live, now=midnight + 3600)
    assert content_type.startswith("text/plain; version=")
    return body


def test_journal_metrics_have_exact_values(journal_path: Path, midnight: float) -> None:
    found = samples(render_at(journal_path, midnight))
    jobs = {
        state: value(found, "mvsep_watch_jobs", inbox="music", state=state)
        for state in ("ready", "submitting", "queued", "downloading", "filed", "failed")
    }
    assert jobs == {"ready": 1, "submitting": 0, "queued": 1, "downloading": 0, "filed": 2,
                    "failed": 1}  # fmt: skip
    assert value(found, "mvsep_watch_jobs", inbox="voice", state="failed") == 2
    assert value(found, "mvsep_watch_slots_in_use") == 1
    assert value(found, "mvsep_watch_submits_total", inbox="music") == 3
    assert value(found, "mvsep_watch_submits_total", inbox="voice") == 1
    failures = {k: v for k, v in found.items() if k[0] == "mvsep_watch_failures_total"}
    assert failures == {
        ("mvsep_watch_failures_total", frozenset({("inbox", "music"), ("reason", "not_audio")})): 1,
        ("mvsep_watch_failures_total",
         frozenset({("inbox", "voice"), ("reason", "mvsep_failed")})): 1,
        ("mvsep_watch_failures_total", frozenset({("inbox", "voice"), ("reason", "other")})): 1,
    }  # fmt: skip
    assert value(found, "mvsep_watch_credits_used_today") == 2.5 + 4.0  # charged, else estimate
    assert value(found, "mvsep_watch_credits_used_total") == 6.0 + 2.5 + 4.0
    assert "mvsep_watch_credits_left" not in {k[0] for k in found}  # no live stats: unknown


def test_durations_are_histograms_of_the_event_times(journal_path: Path, midnight: float) -> None:
    found = samples(render_at(journal_path, midnight))
    drop = "mvsep_watch_drop_to_filed_seconds"
    assert value(found, drop + "_count", inbox="music") == 2
    assert value(found, drop + "_sum", inbox="music") == 530 + 100
    assert value(found, drop + "_bucket", inbox="music", le="60.0") == 0
    assert value(found, drop + "_bucket", inbox="music", le="120.0") == 1
    assert value(found, drop + "_bucket", inbox="music", le="600.0") == 2
    assert value(found, drop + "_bucket", inbox="music", le="+Inf") == 2
    work = "mvsep_watch_mvsep_processing_seconds"
    assert value(found, work + "_count", inbox="music") == 2
    assert value(found, work + "_sum", inbox="music") == 500 + 60
    assert value(found, work + "_bucket", inbox="music", le="30.0") == 0
    assert value(found, work + "_bucket", inbox="music", le="60.0") == 1  # le: at or below
    assert value(found, work + "_bucket", inbox="music", le="600.0") == 2
    assert (work + "_count", frozenset({("inbox", "voice")})) not in found  # never got a result


def test_inbox_mode_and_missed_rescans_come_from_the_watcher_note(
    journal_path: Path, midnight: float
) -> None:
    found = samples(render_at(journal_path, midnight))
    modes = {m: value(found, "mvsep_watch_inbox_mode", inbox="music", mode=m)
             for m in ("native", "polling", "paused")}  # fmt: skip
    assert modes == {"native": 0, "polling": 1, "paused": 0}
    assert value(found, "mvsep_watch_rescans_missed_files_total", inbox="music") == 2
    live = LiveStats(inbox_modes={"music": "paused", "voice": "native"})  # the process knows better
    found = samples(render_at(journal_path, midnight, live))
    assert value(found, "mvsep_watch_inbox_mode", inbox="music", mode="paused") == 1
    assert value(found, "mvsep_watch_inbox_mode", inbox="music", mode="polling") == 0
    assert value(found, "mvsep_watch_inbox_mode", inbox="voice", mode="native") == 1


def test_a_restart_keeps_every_count(journal_path: Path, midnight: float) -> None:
    before = samples(render_at(journal_path, midnight))
    clock = ManualClock(wall_start=midnight + 1000)
    with Journal(journal_path, clock=clock) as journal:  # the daemon restarted: one more filed
        jobs = Jobs(journal, clock, journal_path.parent)
        job = jobs.seen("music", "g.wav")
        jobs.submitted(job, estimate=1.0)
        jobs.filed(job, processing_s=10, filing_s=5)
    after = samples(render_at(journal_path, midnight))
    assert value(after, "mvsep_watch_submits_total", inbox="music") == 4
    assert value(after, "mvsep_watch_jobs", inbox="music", state="filed") == 3
    assert value(after, "mvsep_watch_mvsep_processing_seconds_count", inbox="music") == 3
    assert value(after, "mvsep_watch_credits_used_total") == 6.0 + 2.5 + 4.0 + 1.0
    unchanged = [k for k in before if k[0].startswith("mvsep_watch_failures")]
    assert unchanged and all(after[k] == before[k] for k in unchanged)


def test_reason_texts_and_paths_never_become_labels(journal_path: Path, midnight: float) -> None:
    body = render_at(journal_path, midnight).decode("utf-8")
    assert SECRET_PATH not in body and "boom" not in body and "text file" not in body
    labels = {v for k in samples(body.encode()) for name, v in k[1] if name == "reason"}
    assert labels <= {label for label, _ in FAILURE_CLASSES} | {OTHER_FAILURE}


REASONS = [
    ("not an audio file: empty file (0 bytes)", "not_audio"),
    ("not sent: over the free plan's size cap: 120.0 MB > 100 MB", "plan_cap"),
    ("the input /in/a.wav disappeared before it was sent", "input_gone"),
    ("MVSEP failed the separation: no reason given", "mvsep_failed"),
    ("the result expired at MVSEP: ApiNotFound: gone", "expired"),
    ("the stems could not be filed under their names: [Errno 36] File name too long",
     "naming"),
    ("MVSEP status unavailable: still failing after 9 attempts: ApiTimeout: read",
     "retries_exhausted"),
    ("could not check MVSEP's history for upload 'n-a.wav': ApiServerError: 502",
     "history_unreadable"),
    ("ApiAuthError: HTTP 401", "auth"),
    ("ApiRejected: HTTP 400: bad option", "rejected"),
    ("MVSEP refused the status request: ApiRejected: no", "rejected"),
    ("disk full: [Errno 28] No space left on device", "disk_full"),
    ("unexpected error: KeyError: 'x'", "unexpected"),
    ("something nobody foresaw", OTHER_FAILURE),
]  # fmt: skip


def test_each_reason_the_engine_writes_has_its_class(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        for i, (reason, _) in enumerate(REASONS):
            job, _ = journal.record_seen(source(tmp_path, f"in{i}", "a.wav"), size=1, mtime=1.0)
            journal.mark_failed(job.id, reason)
        body, _ = render(journal)
    found = samples(body)
    got = {dict(k[1])["inbox"]: dict(k[1])["reason"]
           for k in found if k[0] == "mvsep_watch_failures_total"}  # fmt: skip
    assert got == {f"in{i}": label for i, (_, label) in enumerate(REASONS)}


def test_live_stats_are_rendered(tmp_path: Path) -> None:
    live = LiveStats(
        api_calls={("get", "200"): 7, ("get", "429"): 2, ("create", "error"): 1},
        pacer_waits=3, pacer_wait_s=1.5, headroom={"get": 50}, rate_limits={"get": 60},
        slots_limit=4, credits_left=123.5,
    )  # fmt: skip
    with Journal(tmp_path / "j.sqlite") as journal:
        found = samples(render(journal, live)[0])
    assert value(found, "mvsep_watch_api_calls_total", route="get", code="429") == 2
    assert value(found, "mvsep_watch_api_calls_total", route="create", code="error") == 1
    assert value(found, "mvsep_watch_api_rate_limited_total", route="get") == 2
    assert value(found, "mvsep_watch_api_rate_limited_total", route="create") == 0
    assert value(found, "mvsep_watch_pacer_waits_total") == 3
    assert value(found, "mvsep_watch_pacer_wait_seconds_total") == 1.5
    assert value(found, "mvsep_watch_rate_limit_headroom", route="get") == 50
    assert value(found, "mvsep_watch_rate_limit", route="get") == 60
    assert value(found, "mvsep_watch_slots_limit") == 4
    assert value(found, "mvsep_watch_credits_left") == 123.5


def test_without_prometheus_client_render_says_what_to_install(tmp_path: Path) -> None:
    """A real interpreter in which prometheus_client cannot be imported (``sys.modules``
    set to None: the one way to be without an installed package here)."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from pathlib import Path\n"
        "from daemon.journal import Journal\n"
        "from daemon.metrics import MetricsUnavailable, render\n"
        f"j = Journal(Path({str(tmp_path / 'j.sqlite')!r}))\n"
        "try:\n    render(j)\nexcept MetricsUnavailable as e:\n    print('unavailable:', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[1])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "unavailable: /metrics needs prometheus_client" in done.stdout
    assert "mvsep-watch[http]" in done.stdout


def test_a_read_only_journal_renders_the_same(journal_path: Path, midnight: float) -> None:
    """The server may scrape through its own read-only connection (no wait on the daemon's
    connection lock) while the daemon holds the journal."""
    with Journal(journal_path) as daemon_side:
        body, _ = render(daemon_side, now=midnight + 3600)
        with Journal(journal_path, read_only=True) as reader:
            assert render(reader, now=midnight + 3600)[0] == body
