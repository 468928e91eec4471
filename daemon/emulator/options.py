"""The emulator's knobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FREE_MAX_BYTES = 100 * 1000 * 1000
PREMIUM_MAX_BYTES = 1000 * 1024 * 1024
FREE_MAX_SECONDS = 10 * 60.0
PREMIUM_MAX_SECONDS = 100 * 60.0


@dataclass(frozen=True)
class EmulatorOptions:
    """How the emulated MVSEP behaves. Times are seconds; all default to instant jobs.

    - ``tokens``: the valid api tokens; empty means every non-empty token is valid.
    - ``premium``: whether accounts are premium (10 parallel jobs, premium types/formats).
    - ``waiting_s`` / ``processing_s`` (± uniform ``processing_jitter_s``): job phases.
    - ``chunk_seconds``: inputs longer than this also go through ``distributing``.
    - ``files_delay_s``: a done job reports no files for this long.
    - ``expire_after_s``: results vanish this long after done.
    - ``rate_limit_per_min`` per ``rate_limit_window_s`` window per token (or client IP).
    - ``parallel_limit``: overrides the plan's parallel-job limit (free 1, premium 10).
    """

    premium: bool = False
    tokens: tuple[str, ...] = ()
    processing_s: float = 0.0
    processing_jitter_s: float = 0.0
    waiting_s: float = 0.0
    chunk_seconds: float = 600.0
    files_delay_s: float = 0.0
    expire_after_s: float = 72 * 3600.0
    rate_limit_per_min: int = 60
    rate_limit: bool = True
    rate_limit_window_s: float = 60.0
    catalogue_path: Path | None = None
    data_dir: Path | None = None
    parallel_limit: int | None = None
    premium_minutes: float = 1000.0
    free_max_bytes: int = FREE_MAX_BYTES
    premium_max_bytes: int = PREMIUM_MAX_BYTES
    free_max_seconds: float = FREE_MAX_SECONDS
    premium_max_seconds: float = PREMIUM_MAX_SECONDS
    dsp_workers: int = 2
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.catalogue_path is not None:
            object.__setattr__(self, "catalogue_path", Path(self.catalogue_path))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
