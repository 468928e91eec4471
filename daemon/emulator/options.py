"""The emulator's knobs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FREE_MAX_BYTES = 100 * 1000 * 1000
PREMIUM_MAX_BYTES = 1000 * 1024 * 1024
FREE_MAX_SECONDS = 10 * 60.0
PREMIUM_MAX_SECONDS = 100 * 60.0

# X-RateLimit-Limit per route: 60 seen on get and algorithms (captures), 120 on history and
# the account routes (public clients, 2026); the rest are guesses (60).
DEFAULT_RATE_LIMITS: dict[str, int] = {
    "create": 60,
    "get": 60,
    "get_remote": 60,
    "cancel": 60,
    "algorithms": 60,
    "queue": 60,
    "user": 120,
    "login": 120,
    "history": 120,
}
RATE_ROUTES = frozenset(DEFAULT_RATE_LIMITS)
OVER_LIMIT_MODES = ("reject", "queue")
DEFAULT_PEAKS_LEN = 4000
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class EmulatorOptions:
    """How the emulated MVSEP behaves. Times are seconds; all default to instant jobs.

    - ``tokens``: the valid api tokens; empty means every non-empty token is valid.
    - ``premium``: whether accounts are premium (10 parallel jobs, premium types/formats).
    - ``waiting_s`` / ``processing_s`` (± uniform ``processing_jitter_s``): job phases.
    - ``chunk_seconds``: inputs longer than this also go through ``distributing``.
    - ``files_delay_s``: a done job reports no files for this long.
    - ``expire_after_s``: results vanish this long after done.
    - Rate limits: each route counts in its own ``rate_limit_window_s`` window per token (or
      client IP). The limit of a route is ``rate_limits[route]``, else ``rate_limit_per_min``
      when set, else :data:`DEFAULT_RATE_LIMITS`. ``rate_limit=False``: never a 429.
    - ``parallel_limit``: overrides the plan's parallel-job limit (free 1, premium 10).
    - ``over_limit``: past the parallel limit, ``"reject"`` (HTTP 400) or ``"queue"`` (the job
      is accepted and waits in ``waiting`` until a slot frees).
    - ``peaks_len``: numbers in each done file entry's ``peaks`` array (0: no ``peaks``).
    - ``regions``: regional hosts sharing this state, each on its own port; the entry
      (``base_url``) is steered to the first one. Empty: one host, no regions.
    """

    premium: bool = False
    tokens: tuple[str, ...] = ()
    processing_s: float = 0.0
    processing_jitter_s: float = 0.0
    waiting_s: float = 0.0
    chunk_seconds: float = 600.0
    files_delay_s: float = 0.0
    expire_after_s: float = 72 * 3600.0
    rate_limit_per_min: int | None = None
    rate_limits: Mapping[str, int] = field(default_factory=dict)
    rate_limit: bool = True
    rate_limit_window_s: float = 60.0
    catalogue_path: Path | None = None
    data_dir: Path | None = None
    parallel_limit: int | None = None
    over_limit: str = "reject"
    peaks_len: int = DEFAULT_PEAKS_LEN
    regions: tuple[str, ...] = ()
    premium_minutes: float = 1000.0
    free_max_bytes: int = FREE_MAX_BYTES
    premium_max_bytes: int = PREMIUM_MAX_BYTES
    free_max_seconds: float = FREE_MAX_SECONDS
    premium_max_seconds: float = PREMIUM_MAX_SECONDS
    dsp_workers: int = 2
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "rate_limits", dict(self.rate_limits))
        if self.catalogue_path is not None:
            object.__setattr__(self, "catalogue_path", Path(self.catalogue_path))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        self._check()

    def _check(self) -> None:
        unknown = sorted(set(self.rate_limits) - RATE_ROUTES)
        if unknown:
            routes = ", ".join(sorted(RATE_ROUTES))
            raise ValueError(f"rate_limits: unknown route(s) {unknown}; routes: {routes}")
        limits = [*self.rate_limits.values(), self.rate_limit_per_min or 1]
        if any(int(n) < 1 for n in limits):
            raise ValueError("rate limits must be at least 1 request per window")
        if self.over_limit not in OVER_LIMIT_MODES:
            raise ValueError(
                f"over_limit must be one of {OVER_LIMIT_MODES}, not {self.over_limit!r}"
            )
        if self.peaks_len < 0:
            raise ValueError("peaks_len must be 0 (no peaks) or more")
        if self.parallel_limit is not None and self.parallel_limit < 1:
            raise ValueError("parallel_limit must be at least 1")
        bad = [r for r in self.regions if not _REGION_RE.match(r)]
        if bad or len(set(self.regions)) != len(self.regions):
            raise ValueError(f"regions must be unique lower-case names, got {self.regions}")

    def rate_limit_for(self, route: str) -> int:
        """Requests per window allowed on ``route`` (an endpoint name such as ``get``)."""
        if route in self.rate_limits:
            return int(self.rate_limits[route])
        if self.rate_limit_per_min is not None:
            return self.rate_limit_per_min
        return DEFAULT_RATE_LIMITS.get(route, 60)
