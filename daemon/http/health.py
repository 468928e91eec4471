"""PURE: ``/livez`` and ``/readyz`` from what the daemon's parts say and ``now``.

Liveness asks one thing: do the process's loops (the engine's scheduler, the watcher's
checker) still tick? Nothing about MVSEP or the shares: an outage must not make a
supervisor restart a daemon that is waiting correctly. Readiness asks whether the daemon can
do its work now, check by check (``application/health+json``: ``pass``, ``warn`` or
``fail`` each, the worst one overall; HTTP 503 when any fails):

* ``journal:writable``: a write to the journal goes through;
* ``watches:armed``: the watcher runs; paused inboxes (a missing folder, a dead watch being
  restarted) warn, all of them paused fails;
* ``rescan:recent``: each watched inbox was scanned in full within two rescan intervals
  (before the first scan ends: a warning while the start is young);
* ``account:usable``: MVSEP has not refused the account (the journal's ``ACCOUNT_NOTE``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
HEALTH_JSON = "application/health+json"
LOOP_STALE_S = 120.0
"""A loop that has not ticked for this long is hung (the systemd watchdog's 2 minutes)."""
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    output: str = ""
    observed_s: float | None = None  # an age in seconds, where the check measures one

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"status": self.status}
        if self.output:
            entry["output"] = self.output
        if self.observed_s is not None:
            entry |= {"observedValue": round(self.observed_s, 1), "observedUnit": "s"}
        return entry


def document(checks: Sequence[Check], *, description: str) -> tuple[int, dict[str, Any]]:
    """The health+json document and its HTTP code: the worst check decides both."""
    overall: Status = max((c.status for c in checks), key=_RANK.__getitem__, default="pass")
    body = {
        "status": overall,
        "description": description,
        "checks": {c.name: [c.as_json()] for c in checks},
    }
    return (503 if overall == "fail" else 200), body


def liveness(
    loops: Mapping[str, float | None],
    now: float,
    *,
    started_at: float,
    stale_s: float = LOOP_STALE_S,
) -> tuple[int, dict[str, Any]]:
    """``loops``: each loop's last tick (``time.monotonic()``; None: not yet, which counts
    from ``started_at``, when the server started)."""
    checks = []
    for name, tick in loops.items():
        age = max(0.0, now - (started_at if tick is None else tick))
        if age > stale_s:
            output = "never ticked" if tick is None else f"no tick for {age:.0f} s (hung?)"
            checks.append(Check(f"{name}:loop", "fail", output, age))
        else:
            checks.append(Check(f"{name}:loop", "pass", "starting" if tick is None else "", age))
    return document(checks, description="mvsep-watch: the loops tick")


def journal_check(probe: Callable[[], None]) -> Check:
    """``probe`` writes to the journal and raises when it cannot."""
    try:
        probe()
    except Exception as exc:  # closed, deleted, disk full, locked: all mean "not writable"
        return Check("journal:writable", "fail", f"{type(exc).__name__}: {exc}")
    return Check("journal:writable", "pass")


def watches_check(inboxes: Sequence[str], paused: Sequence[str], *, running: bool) -> Check:
    name = "watches:armed"
    if not running:
        return Check(name, "fail", "the watcher is not running")
    if not inboxes:
        return Check(name, "fail", "no inbox is configured")
    if paused:
        status: Status = "fail" if set(paused) >= set(inboxes) else "warn"
        return Check(name, status, "paused inboxes: " + ", ".join(sorted(paused)))
    return Check(name, "pass", f"{len(inboxes)} inbox(es) watched")


def rescan_check(
    scans: Mapping[str, float | None],
    paused: Sequence[str],
    now: float,
    *,
    interval_s: float,
    started_at: float,
) -> Check:
    """Every inbox that is not paused scanned in full within ``2 * interval_s``."""
    name, limit = "rescan:recent", 2 * interval_s
    ages = {n: (None if t is None else max(0.0, now - t)) for n, t in scans.items()}
    ages = {n: a for n, a in ages.items() if n not in paused}
    if not ages:
        return Check(name, "warn", "no inbox is being scanned")
    waiting = sorted(n for n, a in ages.items() if a is None)
    late = sorted(n for n, a in ages.items() if a is not None and a > limit)
    oldest = max((a for a in ages.values() if a is not None), default=None)
    if late or (waiting and now - started_at > limit):
        names = ", ".join(late + waiting)
        return Check(name, "fail", f"no full scan for over {limit:.0f} s: {names}", oldest)
    if waiting:
        return Check(name, "warn", "first scan not finished: " + ", ".join(waiting), oldest)
    return Check(name, "pass", "", oldest)


def account_check(pause: tuple[str, float] | None, now_wall: float) -> Check:
    """``pause``: the journal's account note (why MVSEP refused, since when), or None."""
    if pause is None:
        return Check("account:usable", "pass")
    reason, since = pause
    return Check("account:usable", "fail", f"submits paused: {reason}", now_wall - since)
