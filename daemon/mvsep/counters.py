"""What the client has done in this process, for ``/metrics``: read-only counters.

:class:`ApiCounters` counts every API request the client sent (each attempt, retries
included) by route and answer (``"200"``, ``"429"``, ... or ``"error"``: no answer, a
timeout or a dropped connection), and keeps the credits the account had at its last
``/api/app/user`` answer (``premium_minutes``). One instance is shared by a client and its
:meth:`~daemon.mvsep.client.MvsepClient.with_base_url` siblings. Thread-safe; it holds no
token, no URL, no path. It also keeps the client's gate (:attr:`ApiCounters.gate`), the
one shared pacer, so ``/metrics`` can read its waits and headroom.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

from daemon.mvsep.models import UserInfo

NO_ANSWER = "error"
"""The ``code`` of a request that got no HTTP answer (timeout, connection refused/dropped)."""


class ApiCounters:
    """API requests by (route, code), and the account's credits as last read."""

    def __init__(self, *, gate: object | None = None) -> None:
        self.gate = gate
        """The client's request gate (the shared ``daemon.pacing.Pacer``), for its stats."""
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._credits_left: float | None = None

    def record(self, route: str, status: int | None) -> None:
        """One request to ``route`` answered with ``status`` (None: no answer)."""
        code = NO_ANSWER if status is None else str(status)
        with self._lock:
            self._calls[(route, code)] += 1

    def saw_user(self, user: UserInfo) -> UserInfo:
        """Remember the account's credits from a ``/api/app/user`` answer; ``user`` back."""
        with self._lock:
            self._credits_left = user.premium_minutes
        return user

    def calls(self) -> Mapping[tuple[str, str], int]:
        """A snapshot: (route, code) -> requests sent."""
        with self._lock:
            return MappingProxyType(dict(self._calls))

    @property
    def credits_left(self) -> float | None:
        """The account's ``premium_minutes`` at its last read (None: not read yet)."""
        with self._lock:
            return self._credits_left


__all__ = ["NO_ANSWER", "ApiCounters"]
