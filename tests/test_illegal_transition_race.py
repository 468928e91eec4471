"""Issue 9 item 14: spurious ``IllegalTransition`` tracebacks under load.

The race: each scheduler pass reads a snapshot of every active job, then visits them one by
one. A step that ends (or a cancel that lands) after the snapshot was read leaves the entry
stale, and the scheduler acted on it: a second poll of a job already ``downloading``
(``result_ready`` refused), a second prepare of a job already deferred (``prepared``
refused), a resume of a job already cancelled (the whole pass failed). Under load (300 jobs)
that happened 7 times.

Provoked deterministically: the journal below commits, right after the scheduler read its
snapshot, exactly what the racing step or cancel commits. A real journal, a real emulator
over loopback, the real engine.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until
from structlog.testing import capture_logs
from test_engine_rig import FAST, FAST_POLLS, REQUEST, kept_source

from daemon.clock import ManualClock
from daemon.engine import Engine
from daemon.errors import IllegalTransition
from daemon.jobs import Job, JobState, ResultFile, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer

S = JobState


class RacingJournal(Journal):
    """A journal whose next ``active_jobs()`` read is followed at once by ``race()``: what
    another thread committed just after the scheduler took its snapshot."""

    race: Callable[[], object] | None = None

    def active_jobs(self) -> list[Job]:
        snapshot = super().active_jobs()
        race, self.race = self.race, None
        if race is not None:
            race()
        return snapshot


@pytest.fixture
def client(emulator: Any) -> Iterator[MvsepClient]:
    with MvsepClient(base_url=emulator.base_url, api_token="t", gate=Pacer(limit=600)) as c:
        yield c


def source(tmp: Path, audio: Path) -> SourceFile:
    return kept_source(tmp, audio, output_template="{name}/{name} - {stem}.{ext}")


def engine_on(journal: Journal, client: MvsepClient, **kwargs: Any) -> Engine:
    return Engine(
        journal=journal,
        client=client,
        rng=random.Random(3),
        settings=FAST,
        poll_policy=FAST_POLLS,
        **kwargs,
    )


def errors_in(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("log_level") in ("error", "critical", "exception")]


def test_a_poll_that_ended_after_the_snapshot_is_not_run_again(
    tmp_path: Path, emulator: Any, client: MvsepClient, audio_file: Callable[..., Path]
) -> None:
    """The poll that saw ``done`` committed ``result_ready`` after the snapshot (which still
    says ``queued``): the scheduler must not poll again (an extra get, then
    ``result_ready`` refused in ``downloading``: a traceback)."""
    (tmp_path / "out").mkdir()
    audio = audio_file("in/a.wav", seconds=0.5)
    journal = RacingJournal(tmp_path / "state" / "journal.sqlite3")
    try:
        job, _ = journal.record_seen(source(tmp_path, audio), size=1, mtime=1.0)
        journal.mark_prepared(job.id, "sha", None)
        job = journal.mark_submitting(job.id, "0123456789ab", base_url=client.base_url)
        created = client.create(
            sep_type=REQUEST.sep_type,
            output_format=REQUEST.output_format,
            options=REQUEST.options,
            file=audio,
            upload_name=f"{job.nonce}-a.wav",
        )
        journal.mark_submitted(job.id, created.hash)
        wait_until(lambda: client.get(created.hash).is_finished, "the job done at MVSEP")
        status = client.get(created.hash)
        files = [
            ResultFile(type=f.type, url=f.url, download=f.download or "") for f in status.files
        ]
        gets = emulator.stats["calls"]["get"]
        journal.race = lambda: journal.mark_result_ready(job.id, files)  # the poll's commit

        engine = engine_on(journal, client)
        with capture_logs() as logs:
            try:
                assert engine.run_until_idle(30)
            finally:
                engine.stop()
        assert journal.get(job.id).state is S.FILED
        assert emulator.stats["calls"]["get"] == gets  # the result was known: no second get
        assert errors_in(logs) == [], errors_in(logs)
    finally:
        journal.close()


def test_a_prepare_that_ended_after_the_snapshot_is_not_run_again(
    tmp_path: Path, emulator: Any, client: MvsepClient, audio_file: Callable[..., Path]
) -> None:
    """The prepare deferred the job (a cut-off copy) after the snapshot (which still says
    ``ready``, not prepared): a second prepare would be refused in ``retry_wait``."""
    audio = audio_file("in/b.wav", seconds=0.5)
    journal = RacingJournal(tmp_path / "state" / "journal.sqlite3")
    try:
        job, _ = journal.record_seen(source(tmp_path, audio), size=1, mtime=1.0)
        far = 10**10
        journal.race = lambda: journal.mark_deferred(job.id, due_at=far, error="cut off")
        probed: list[Path] = []

        def probe(path: Path) -> Any:
            from daemon import media

            probed.append(path)
            return media.probe(path)

        engine = engine_on(journal, client, probe=probe)
        with capture_logs() as logs:
            engine.start()
            try:
                wait_until(lambda: journal.get(job.id).state is S.RETRY_WAIT, "the deferral")
                engine.wake()
                engine.wake()  # passes that would see a stale entry, if one were left
                wait_until(lambda: engine.in_flight() == {}, "the engine idle")
            finally:
                engine.stop()
        assert journal.get(job.id).state is S.RETRY_WAIT
        assert journal.get(job.id).sha256 is None
        assert probed == []  # the stale "ready" was never prepared
        assert errors_in(logs) == [], errors_in(logs)
    finally:
        journal.close()


def test_a_wait_cancelled_after_the_snapshot_is_not_resumed(tmp_path: Path) -> None:
    """A ``retry_wait`` job whose due time came is cancelled (its file removed) just after
    the snapshot: the pass must not fail on resuming it. No worker pool, no API call."""
    clock = ManualClock(now=1000.0)
    journal = RacingJournal(tmp_path / "journal.sqlite3", clock=clock)
    client = MvsepClient(base_url="http://127.0.0.1:9", api_token="unused")  # never called
    try:
        audio = tmp_path / "in" / "c.wav"
        audio.parent.mkdir(parents=True)
        audio.write_bytes(b"RIFF")
        engine = Engine(journal=journal, client=client, clock=clock)
        job_id = engine.submit_file(source(tmp_path, audio))
        assert job_id is not None
        journal.mark_deferred(job_id, due_at=clock.time() - 1.0, error="ApiServerError: 503")
        journal.race = lambda: engine.cancel_path(audio, "the file was removed from its inbox")
        try:
            engine.tick(clock.monotonic())
        except IllegalTransition as exc:  # what the pass died of
            pytest.fail(f"the scheduler pass failed: {exc}")
        assert journal.get(job_id).state is S.CANCELLED
        assert [e.kind for e in journal.events(job_id)][-2:] == ["cancelled", "source_disposed"]
    finally:
        journal.close()
        client.close()
