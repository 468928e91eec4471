"""The engine's settings. Every one that has a config key takes its default from
``daemon.config`` (the one table of defaults) under the same name; the rest are internal
knobs with one default here."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.config import CreditsSection, EngineSection, MvsepSection
from daemon.engine.retry import ExpiryPolicy, RetryPolicy
from daemon.records import CancelProcessing

_ENGINE = EngineSection()
_MVSEP = MvsepSection()
_CREDITS = CreditsSection()


@dataclass(frozen=True)
class EngineSettings:
    """Plain engine settings (``service.py`` maps the config onto these, name for name)."""

    max_parallel_jobs: int | None = _MVSEP.max_parallel_jobs
    """``[mvsep] max_parallel_jobs``: jobs at MVSEP at once; ``None``: from
    ``/api/app/user`` (premium → ``premium_slots``)."""
    account_recheck_s: float = _MVSEP.account_recheck_s
    """``[mvsep] account_recheck_s``: seconds between reads of the account (plans change)."""
    free_max_file_mb: float = _MVSEP.free_max_file_mb
    """``[mvsep] free_max_file_mb`` and the three below: the plan caps checked before any
    byte is sent (MB = 10**6 bytes)."""
    free_max_duration_min: float = _MVSEP.free_max_duration_min
    premium_max_file_mb: float = _MVSEP.premium_max_file_mb
    premium_max_duration_min: float = _MVSEP.premium_max_duration_min
    premium_slots: int = 10
    free_slots: int = 1
    max_transfers: int = _ENGINE.max_transfers
    """Uploads + downloads running at once."""
    api_workers: int = 4
    """Threads for polls, reconciliation, cancels and input preparation."""
    retry_base_s: float = _ENGINE.retry_base_s
    retry_cap_s: float = _ENGINE.retry_cap_s
    retry_deadline_s: float = _ENGINE.retry_deadline_s
    """A retry-later error streak longer than this fails the job."""
    slots_full_retry_s: float = 20.0
    reconcile_grace_s: float = _ENGINE.reconcile_grace_s
    """A lost create absent from the history this long after its intent was not created."""
    reconcile_retry_s: float = 5.0
    history_margin_s: float = 24 * 3600.0
    """History entries older than intent minus this (any time zone) stop the search."""
    history_max_pages: int = 25
    resubmit_expired: bool = _ENGINE.resubmit_expired
    expiry: ExpiryPolicy = ExpiryPolicy()
    """When a ``not_found`` poll may mean the result expired (``daemon.engine.retry``)."""
    dedupe_same_content: bool = _ENGINE.dedupe_same_content
    on_cancel_processing: CancelProcessing = _ENGINE.on_cancel_processing
    error_pause_s: float = 5.0
    """Pause of a job after an unexpected exception in one of its steps (a bug)."""
    cut_off_wait_s: float = _ENGINE.cut_off_wait_s
    """A WAV/AIFF cut off before the end its header promises, changed less than this long
    ago, may be a copy that stalled (SMB, Wi-Fi): it is checked again, not failed, until it
    has been unchanged this long."""
    cut_off_recheck_s: float = 30.0
    missing_inbox_recheck_s: float = _ENGINE.missing_inbox_recheck_s
    """A job whose inbox or output folder is missing (an unmounted share) waits this long
    between looks; it is never cancelled or failed for it."""
    max_credits_per_day: float | None = _CREDITS.max_credits_per_day
    """``[credits] max_credits_per_day`` and the one below: the credit guard's limits
    (``daemon.engine.credit_guard``; premium accounts only); ``None``: no limit."""
    keep_credits_at_least: float | None = _CREDITS.keep_credits_at_least
    credits_read_every_s: float = 15.0
    """What filed jobs cost is read from the history (one read for all of them) once the
    oldest has waited this long, and at most this often (``daemon.engine.credits``)."""
    held_recheck_s: float = 300.0
    """While a job is held for the credits left, the account is read this often."""

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            retry_base_s=self.retry_base_s,
            retry_cap_s=self.retry_cap_s,
            retry_deadline_s=self.retry_deadline_s,
            slots_full_retry_s=self.slots_full_retry_s,
            resubmit_expired=self.resubmit_expired,
        )
