"""Per-route rate limits: a fixed window per (route, client), like Laravel's throttle."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class RateDecision:
    """The rate limiter's verdict for one request."""

    limit: int
    remaining: int
    retry_after_s: int | None  # set when the request must get a 429

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` (and ``Retry-After`` on a 429)."""
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if self.retry_after_s is not None:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class RateLimiter:
    """A fixed window per route and key (api token or client IP); 429s do not count.

    ``limit_for(route)`` gives each route's limit; every route is counted on its own.
    """

    def __init__(
        self, *, limit_for: Callable[[str], int], window_s: float, enabled: bool, clock: Clock
    ) -> None:
        self.limit_for, self.window_s, self.enabled, self.clock = (
            limit_for,
            window_s,
            enabled,
            clock,
        )
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def hit(self, route: str, key: str) -> RateDecision:
        """Count one request of ``key`` on ``route``; not thread-safe alone (the state locks)."""
        now = self.clock()
        limit = self.limit_for(route)
        start, count = self._windows.get((route, key), (now, 0))
        if now >= start + self.window_s:
            start, count = now, 0
        if self.enabled and count >= limit:
            return RateDecision(limit, 0, max(1, math.ceil(start + self.window_s - now)))
        self._windows[(route, key)] = (start, count + 1)
        return RateDecision(limit, max(0, limit - count - 1), None)

    def clear(self) -> None:
        """Forget every window."""
        self._windows.clear()
