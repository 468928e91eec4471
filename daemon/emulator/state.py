"""The emulator's state: accounts, jobs, rate limits, stats. Thread-safe (one lock).

Job phases advance lazily from the monotonic clock when observed; the DSP runs in a small
worker pool so the server stays responsive.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.emulator.audio import probe
from daemon.emulator.catalogue import Catalogue, TypeSpec
from daemon.emulator.faults import FaultBook
from daemon.emulator.jobs import Job
from daemon.emulator.options import EmulatorOptions
from daemon.emulator.queueing import grant_slots
from daemon.emulator.ratelimit import RateDecision, RateLimiter
from daemon.emulator.regions import Regions
from daemon.emulator.worker import run_job

Clock = Callable[[], float]


@dataclass
class Account:
    """An emulated user."""

    token: str
    premium: bool
    premium_minutes: float
    hex_id: str
    email: str

    @property
    def name(self) -> str:
        """The user's display name."""
        return self.email.split("@", 1)[0]


@dataclass
class Stats:
    """Counters for tests and ``GET /_emulator/stats``."""

    calls: dict[str, int] = field(default_factory=dict)
    creates_accepted: int = 0
    creates_rejected: int = 0
    rate_limited: int = 0
    cancels: int = 0
    downloads: int = 0
    faults_fired: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {
            "calls": dict(self.calls),
            "creates_accepted": self.creates_accepted,
            "creates_rejected": self.creates_rejected,
            "rate_limited": self.rate_limited,
            "cancels": self.cancels,
            "downloads": self.downloads,
            "faults_fired": dict(self.faults_fired),
        }


GET_LOG_MAX = 100_000
"""Get answers kept for :meth:`EmulatorState.get_records` (the oldest are dropped)."""


@dataclass(frozen=True)
class GetRecord:
    """One answered ``get`` of a known job: when (monotonic), which, what it said."""

    at: float
    hash: str
    status: str
    files_visible: bool


@dataclass(frozen=True)
class JobTimes:
    """A job's timeline on the monotonic clock (benchmarks: slot use, detection lag)."""

    hash: str
    created: float
    slot: float | None  # when it got a parallel slot (None: still queued)
    done: float | None  # when MVSEP finished it (None: not yet, or it failed)
    processing_s: float


@dataclass(frozen=True)
class JobView:
    """A read-only snapshot of a job for tests (``EmulatorServer.jobs``)."""

    hash: str
    upload_name: str
    token: str
    sep_type: int
    options: dict[str, str]
    output_format: int
    state: str
    created_at: datetime
    credits: float
    duration_s: float | None
    failure: str | None
    files: tuple[str, ...]
    source_url: str | None
    region: str | None = None
    queued: bool = False


class EmulatorState:
    """Everything the routes read and change, behind one lock."""

    def __init__(
        self, options: EmulatorOptions, data_dir: Path, *, clock: Clock = time.monotonic
    ) -> None:
        self.options = options
        self.data_dir = data_dir
        self.clock = clock
        self.lock = threading.RLock()
        self.catalogue = Catalogue.load(options.catalogue_path)
        self.faults = FaultBook()
        self.random = random.Random(options.seed)
        self.stopping = threading.Event()
        self.regions = Regions(options.regions)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, options.dsp_workers), thread_name_prefix="emu-dsp"
        )
        self._init_tables()

    def _init_tables(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.jobs: dict[str, Job] = {}
        self.stats = Stats()
        self.rate = RateLimiter(
            limit_for=self.options.rate_limit_for,
            window_s=self.options.rate_limit_window_s,
            enabled=self.options.rate_limit,
            clock=self.clock,
        )
        self._next_id = 1000
        self.get_log: deque[GetRecord] = deque(maxlen=GET_LOG_MAX)

    # -- accounts -----------------------------------------------------------------------
    def account_for(self, token: str | None) -> Account | None:
        """The account of ``token``, created on first use; None when the token is invalid."""
        if not token or (self.options.tokens and token not in self.options.tokens):
            return None
        with self.lock:
            account = self.accounts.get(token)
            if account is None:
                account = Account(
                    token=token,
                    premium=self.options.premium,
                    premium_minutes=self.options.premium_minutes if self.options.premium else 0.0,
                    hex_id=hashlib.sha256(token.encode()).hexdigest()[:10],
                    email=f"user-{hashlib.sha256(token.encode()).hexdigest()[:6]}@example.org",
                )
                self.accounts[token] = account
            return account

    def login(self, email: str) -> Account:
        """The account behind an email (any non-empty password works)."""
        if self.options.tokens:
            token = self.options.tokens[0]
        else:
            token = "emu-" + hashlib.sha256(email.encode()).hexdigest()[:24]
        account = self.account_for(token)
        assert account is not None
        with self.lock:
            account.email = email
        return account

    def parallel_limit(self, account: Account) -> int:
        """How many jobs the account may run at once."""
        if self.options.parallel_limit is not None:
            return self.options.parallel_limit
        return 10 if account.premium else 1

    def active_jobs(self, account: Account) -> int:
        """Jobs of the account that count against the parallel limit (queued ones do not)."""
        now = self.clock()
        with self.lock:
            return sum(
                1 for j in self.jobs.values() if j.token == account.token and j.holds_slot(now)
            )

    def in_flight(self, account: Account) -> int:
        """Jobs of the account not finished yet, queued ones included (``current_queue``)."""
        now = self.clock()
        with self.lock:
            return sum(
                1 for j in self.jobs.values() if j.token == account.token and j.is_active(now)
            )

    def settle(self) -> None:
        """Give queued jobs (``over_limit="queue"``) the slots that freed since last asked."""
        if self.options.over_limit != "queue":
            return  # nothing is ever queued
        now = self.clock()
        with self.lock:
            by_token: dict[str, list[Job]] = {}
            for job in self.jobs.values():
                by_token.setdefault(job.token, []).append(job)
            for token, jobs in by_token.items():
                account = self.accounts.get(token)
                if account is not None and any(j.queued for j in jobs):
                    grant_slots(jobs, self.parallel_limit(account), now)

    # -- bookkeeping --------------------------------------------------------------------
    def count_call(self, endpoint: str) -> None:
        """Count one request to ``endpoint``."""
        with self.lock:
            self.stats.calls[endpoint] = self.stats.calls.get(endpoint, 0) + 1

    def rate_hit(self, route: str, key: str) -> RateDecision:
        """Count one API request of ``key`` on ``route`` against that route's limit."""
        with self.lock:
            decision = self.rate.hit(route, key)
            if decision.retry_after_s is not None:
                self.stats.rate_limited += 1
            return decision

    def log_get(self, job_hash: str, status: str, files_visible: bool, at: float) -> None:
        """Record one ``get`` answer about a known job."""
        with self.lock:
            self.get_log.append(GetRecord(at, job_hash, status, files_visible))

    def get_records(self) -> list[GetRecord]:
        """The ``get`` answers given so far (read-only copy, oldest first)."""
        with self.lock:
            return list(self.get_log)

    def job_times(self) -> list[JobTimes]:
        """Every job's created, slot and done times (read-only copy)."""
        with self.lock:
            jobs = list(self.jobs.values())
            return [
                JobTimes(j.hash, j.created_mono, j.slot_mono, j.done_at(), j.processing_s)
                for j in jobs
            ]

    def stats_json(self) -> dict[str, Any]:
        """Stats plus fired faults, JSON-able."""
        with self.lock:
            out = self.stats.to_json()
        out["faults_fired"] = dict(self.faults.fired)
        out["faults_pending"] = [f.to_json() for f in self.faults.pending()]
        return out

    def reset(self) -> None:
        """Forget jobs, accounts, faults, stats and rate windows."""
        with self.lock:
            for job in self.jobs.values():
                job.cancelled = True
            self._init_tables()
        self.faults.clear()

    # -- jobs ---------------------------------------------------------------------------
    def next_job_id(self) -> int:
        """A new history id (increasing)."""
        with self.lock:
            self._next_id += 1
            return self._next_id

    def new_job_dir(self) -> Path:
        """A fresh directory for one job's files."""
        path = self.data_dir / f"job-{self.next_job_id()}"
        path.mkdir(parents=True)
        return path

    def make_hash(self, account: Account, upload_name: str) -> str:
        """``YYYYMMDDhhmmss-<10 hex>-<slug>``, unique (later seconds are used on collision)."""
        from daemon.emulator.answers import slugify_name

        slug = slugify_name(upload_name)
        moment = datetime.now().replace(microsecond=0)
        with self.lock:
            while True:
                candidate = f"{moment:%Y%m%d%H%M%S}-{account.hex_id}-{slug}"
                if candidate not in self.jobs:
                    return candidate
                moment += timedelta(seconds=1)

    def job_duration_s(self) -> float:
        """This job's processing time: ``processing_s`` ± uniform jitter, never negative."""
        jitter = self.options.processing_jitter_s
        with self.lock:
            offset = self.random.uniform(-jitter, jitter) if jitter > 0 else 0.0
        return max(0.0, self.options.processing_s + offset)

    def register(self, job: Job, account: Account, *, fail_message: str | None) -> None:
        """Add a created job, charge its credits and start its worker."""
        with self.lock:
            self.jobs[job.hash] = job
            self.charge(job, account)
            self.stats.creates_accepted += 1
            if fail_message is not None:
                job.failure = fail_message
                job.failure_scheduled = True
                return
        self._pool.submit(run_job, self, job)

    def charge(self, job: Job, account: Account) -> None:
        """Charge a premium account for a job whose duration is known (under the lock)."""
        if account.premium and job.duration_s is not None and job.credits == 0:
            cost = self.cost_of(job.type_spec, job.duration_s, job.options)
            job.credits = float(cost)
            account.premium_minutes -= cost

    def cost_of(self, spec: TypeSpec, duration_s: float, options: dict[str, str]) -> int:
        """Credits a job of ``duration_s`` on ``spec`` with ``options`` costs."""
        factor = spec.price_coefficient * spec.price_multiplier(options)
        return max(1, math.floor(duration_s * factor / 60))

    def cancel(self, account: Account, job_hash: str) -> tuple[bool, str]:
        """Cancel a job that has not started; refund it. Returns (success, message)."""
        now = self.clock()
        with self.lock:
            job = self.jobs.get(job_hash)
            if job is None or job.token != account.token:
                return False, "Separation not found"
            status = job.phase(now).status
            if status != "waiting":
                return False, f"The separation cannot be cancelled: it is {status}"
            job.cancelled = True
            job.cancelled_mono = now
            account.premium_minutes += job.credits
            job.credits = 0.0
            self.stats.cancels += 1
        return True, "Cancelled"

    def queue_position(self, job: Job) -> tuple[int, int]:
        """(queue_count, current_order) of a waiting job."""
        now = self.clock()
        with self.lock:
            waiting = [j for j in self.jobs.values() if j.phase(now).status == "waiting"]
        ahead = sum(1 for j in waiting if (j.created_mono, j.id) < (job.created_mono, job.id))
        return len(waiting), ahead + 1

    def view(self, job: Job) -> JobView:
        """A snapshot of ``job``."""
        with self.lock:
            return JobView(
                hash=job.hash,
                upload_name=job.upload_name,
                token=job.token,
                sep_type=job.sep_type,
                options=dict(job.options),
                output_format=job.output_format,
                state=job.phase(self.clock()).status,
                created_at=job.created_at,
                credits=job.credits,
                duration_s=job.duration_s,
                failure=job.failure,
                files=tuple(s.filename for s in job.files),
                source_url=job.source_url,
                region=job.region,
                queued=job.queued,
            )

    def snapshot(self) -> dict[str, JobView]:
        """Every job, as snapshots."""
        self.settle()
        with self.lock:
            jobs = list(self.jobs.values())
        return {job.hash: self.view(job) for job in jobs}

    def finish_dsp(self, job: Job, *, failure: str | None = None) -> None:
        """Called by the worker when the DSP (or the fetch) is over."""
        now = self.clock()
        with self.lock:
            if failure is not None:
                job.failure = failure
                job.failure_mono = now
            else:
                job.dsp_done_mono = now

    def probe_input(self, job: Job) -> None:
        """Fill ``duration_s`` and ``input_size`` from the input file (under the lock)."""
        info = probe(job.input_path)
        with self.lock:
            job.input_size = job.input_path.stat().st_size if job.input_path.exists() else 0
            job.duration_s = info.duration_s if info else None
            account = self.accounts.get(job.token)
            if account is not None:
                self.charge(job, account)

    def close(self) -> None:
        """Stop the workers (they check ``stopping`` between blocks) and wait for them."""
        self.stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def remove_data(self) -> None:
        """Delete the data directory."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
