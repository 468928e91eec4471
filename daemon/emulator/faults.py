"""Injected faults: what can go wrong, on which endpoint, how many times.

A fault matches a request when its ``endpoint`` is the request's endpoint name (or ``*``).
The first ``skip`` matching requests pass untouched; the next ``times`` ones (``None``: all)
get the fault. Spec syntax (CLI ``--fault``): ``KIND[:ENDPOINT][:key=value...]``, e.g.
``http_5xx:create:times=2:status=503`` or ``slow:get:delay_s=3:times=always``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

FAULT_KINDS = frozenset(
    {
        "http_5xx",
        "http_429",
        "slow",
        "drop_upload",
        "drop_after_create",
        "drop_download",
        "job_failed",
        "hash_not_found",
        "done_without_files",
        "delay_answer",
        "throttle_download",
        "throttle_upload",
    }
)
ENDPOINTS = frozenset(
    {
        "*",
        "create",
        "get",
        "get_remote",
        "cancel",
        "algorithms",
        "user",
        "login",
        "queue",
        "history",
        "download",
    }
)


@dataclass(frozen=True)
class Fault:
    """One injected fault. ``times=None`` means always."""

    kind: str
    endpoint: str = "*"
    times: int | None = 1
    skip: int = 0
    status: int = 500
    retry_after_s: float = 2.0
    delay_s: float = 1.0
    message: str = "Separation failed (injected fault)"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            )
        if self.endpoint not in ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {self.endpoint!r}; expected one of {sorted(ENDPOINTS)}"
            )
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for always)")

    def to_json(self) -> dict[str, Any]:
        """The fault as a JSON-able dict (the admin endpoint's format)."""
        return asdict(self)


def fault_from_json(data: dict[str, Any]) -> Fault:
    """Build a fault from the admin endpoint's JSON object (unknown keys are an error)."""
    known = set(Fault.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    return Fault(**data)


_INT_FIELDS = {"times", "skip", "status"}
_FLOAT_FIELDS = {"retry_after_s", "delay_s"}


def parse_fault_spec(spec: str) -> Fault:
    """Parse ``KIND[:ENDPOINT][:key=value...]`` (``times=always`` for an unlimited fault)."""
    parts = [p for p in spec.split(":") if p]
    if not parts:
        raise ValueError("empty fault spec")
    kwargs: dict[str, Any] = {"kind": parts[0]}
    for part in parts[1:]:
        if "=" not in part:
            kwargs["endpoint"] = part
            continue
        key, value = part.split("=", 1)
        kwargs[key] = _spec_value(key, value)
    return fault_from_json(kwargs)


def _spec_value(key: str, value: str) -> Any:
    if key == "times" and value in {"always", "none", "inf"}:
        return None
    if key in _INT_FIELDS:
        return int(value)
    if key in _FLOAT_FIELDS:
        return float(value)
    return value


@dataclass
class _Armed:
    fault: Fault
    skip_left: int
    times_left: int | None


class FaultBook:
    """The armed faults; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self.fired: dict[str, int] = {}

    def add(self, fault: Fault) -> None:
        """Arm a fault."""
        with self._lock:
            self._armed.append(_Armed(fault, fault.skip, fault.times))

    def clear(self) -> None:
        """Disarm every fault and forget the counts."""
        with self._lock:
            self._armed.clear()
            self.fired.clear()

    def pending(self) -> list[Fault]:
        """The faults still armed, with their remaining counts."""
        with self._lock:
            return [replace(a.fault, skip=a.skip_left, times=a.times_left) for a in self._armed]

    def take(self, endpoint: str, kinds: frozenset[str] | set[str]) -> Fault | None:
        """The fault (of one of ``kinds``) this request gets, if any; counts it as used."""
        with self._lock:
            for armed in self._armed:
                fault = armed.fault
                if fault.kind not in kinds or fault.endpoint not in ("*", endpoint):
                    continue
                if armed.skip_left > 0:
                    armed.skip_left -= 1
                    continue
                if armed.times_left is not None:
                    armed.times_left -= 1
                    if armed.times_left == 0:
                        self._armed.remove(armed)
                self.fired[fault.kind] = self.fired.get(fault.kind, 0) + 1
                return fault
        return None
