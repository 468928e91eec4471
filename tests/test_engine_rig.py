"""Shared setup of the engine tests: a real emulator, client, pacer, journal and engine."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daemon.engine import Engine, EngineSettings
from daemon.jobs import Job, JobRequest, JobState, SourceFile
from daemon.journal import Journal
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer, PollPolicy

FAST_POLLS = PollPolicy(
    min_interval_s=0.02,
    jitter=0.1,
    waiting_base_s=0.05,
    waiting_per_position_s=0.02,
    waiting_unknown_s=0.05,
    processing_unknown_s=0.05,
    processing_floor_s=0.02,
    distributing_unknown_s=0.05,
    merging_s=0.02,
    done_pending_s=0.05,
    other_s=0.05,
    max_interval_s=0.2,
)

FAST = EngineSettings(
    retry_base_s=0.05,
    retry_cap_s=0.3,
    retry_deadline_s=30.0,
    slots_full_retry_s=0.1,
    reconcile_grace_s=1.0,
    reconcile_retry_s=0.1,
    error_pause_s=0.2,
)

REQUEST = JobRequest(
    sep_type=48, options={"add_opt1": "4"}, output_format=1, algorithm_name="MelBand Roformer"
)


class Recorder:
    """An ``on_progress`` hook that lets tests wait for conditions (no sleeps)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.max_slots_held = 0
        self.journal: Journal | None = None

    def __call__(self, job_id: int, kind: str, data: Mapping[str, Any]) -> None:
        held = self.journal.slots_held() if self.journal is not None and kind == "state" else 0
        with self.cond:
            self.events.append((job_id, kind, dict(data)))
            self.max_slots_held = max(self.max_slots_held, held)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout=timeout_s):
                raise TimeoutError("condition not reached")


@dataclass
class Rig:
    tmp: Path
    emulator: Any
    journal: Journal
    client: MvsepClient
    engine: Engine
    recorder: Recorder
    settings: EngineSettings
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def inbox(self) -> Path:
        return self.tmp / "in"

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def source(self, path: Path, **changes: Any) -> SourceFile:
        base = SourceFile(
            path=path,
            inbox="main",
            relative_path=str(path.relative_to(self.inbox)),
            preset="vocals",
            request=REQUEST,
            output_dir=self.out,
            output_template="{relative_dir}/{name}/{name} - {stem}.{ext}",
            failed_dir=self.inbox / "_failed",
            after_success="keep",
        )
        return replace(base, **changes)

    def submit(self, path: Path, **changes: Any) -> int:
        job_id = self.engine.submit_file(self.source(path, **changes))
        assert job_id is not None
        return job_id

    def job(self, job_id: int) -> Job:
        return self.journal.get(job_id)

    def wait_state(self, job_id: int, *states: JobState, timeout_s: float = 60.0) -> Job:
        self.recorder.wait_for(lambda: self.job(job_id).state in states, timeout_s)
        return self.job(job_id)

    def restart(self, **settings: Any) -> None:
        """Stop the engine, close the journal, open both again (a daemon restart)."""
        self.engine.stop(timeout_s=10)
        self.journal.close()
        self.journal = Journal(self.tmp / "state" / "journal.sqlite3")
        self.recorder = Recorder()
        self.recorder.journal = self.journal
        self.settings = replace(self.settings, **settings)
        self.engine = _engine(self.journal, self.client, self.settings, self.recorder)

    def creates(self) -> int:
        return len(self.emulator.jobs)


def kept_source(tmp: Path, audio: Path, **changes: Any) -> SourceFile:
    """A source in ``tmp/in`` filed to ``tmp/out`` whose input is kept after success."""
    base = SourceFile(
        path=audio,
        inbox="main",
        relative_path=audio.name,
        preset="vocals",
        request=REQUEST,
        output_dir=tmp / "out",
        output_template="{name}/{stem}.{ext}",
        failed_dir=tmp / "in" / "_failed",
        after_success="keep",
    )
    return replace(base, **changes)


def _engine(
    journal: Journal,
    client: MvsepClient,
    settings: EngineSettings,
    recorder: Recorder,
    poll_policy: PollPolicy = FAST_POLLS,
) -> Engine:
    return Engine(
        journal=journal,
        client=client,
        rng=random.Random(7),
        settings=settings,
        poll_policy=poll_policy,
        on_progress=recorder,
    )


@contextmanager
def rig(
    tmp: Path, emulator: Any, *, poll_policy: PollPolicy = FAST_POLLS, **settings: Any
) -> Iterator[Rig]:
    """A journal, client and engine on ``tmp`` against ``emulator``; ``settings`` override
    :data:`FAST`. ``poll_policy`` must keep a test's polls under the emulator's 60 a minute
    for as long as its jobs run (FAST_POLLS does for jobs of about a second)."""
    journal = Journal(tmp / "state" / "journal.sqlite3")
    client = MvsepClient(
        base_url=emulator.base_url,
        api_token="test-token",
        gate=Pacer(limit=600),
        max_attempts=3,
        retry_timeout_s=5,
        read_timeout_s=10,
        upload_timeout_s=20,
    )
    recorder = Recorder()
    recorder.journal = journal
    conf = replace(FAST, **settings)
    r = Rig(
        tmp,
        emulator,
        journal,
        client,
        _engine(journal, client, conf, recorder, poll_policy),
        recorder,
        conf,
    )
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "out").mkdir(exist_ok=True)  # as the daemon does at start
    try:
        yield r
    finally:
        r.engine.stop(timeout_s=10)
        r.journal.close()
        client.close()
