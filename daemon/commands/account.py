"""``mvsep-watch account [--json]``: the MVSEP account behind the token.

Its name, whether premium is on, the credits left, the parallel limit the daemon uses (the
engine's own rule, ``daemon/engine/slots.py``: ``[mvsep] max_parallel_jobs`` when set, else
the plan's count), the jobs it has running and MVSEP's queue lengths. The token is never
printed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

from daemon.commands import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, SubParsers, help_text, load_config
from daemon.commands.quick import quick_client
from daemon.config import Settings
from daemon.errors import ApiAuthError, MvsepWatchError
from daemon.mvsep.models import QueueInfo, UserInfo


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "account",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from daemon.service import TOKEN_REFUSED  # the daemon's own wording; loaded when run

    settings, _ = load_config(args, require_token=True)
    with quick_client(settings) as client:
        try:
            user = client.user()
        except ApiAuthError:
            print(f"error: {TOKEN_REFUSED}", file=sys.stderr)
            return EXIT_CONFIG
        except MvsepWatchError as exc:
            print(
                f"error: cannot read the account at {settings.mvsep.base_url}: {exc}",
                file=sys.stderr,
            )
            return EXIT_FAIL
        try:
            queue: QueueInfo | None = client.queue()
        except MvsepWatchError:  # the queue is a courtesy: the account is what was asked
            queue = None
    summary = summarise(settings, user, queue)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(render_table(summary))
    return EXIT_OK


def parallel_limit(settings: Settings, user: UserInfo) -> int:
    """The slot count the engine would run at with this account (its own code decides)."""
    from daemon.engine.slots import Slots
    from daemon.service import engine_settings

    slots = Slots(engine_settings(settings), lambda: user, rng=random.Random(0))
    slots.read(0.0)
    return slots.limit


def summarise(settings: Settings, user: UserInfo, queue: QueueInfo | None) -> dict[str, Any]:
    configured = settings.mvsep.max_parallel_jobs
    return {
        "base_url": settings.mvsep.base_url,
        "name": user.name,
        "premium": bool(user.premium_enabled),
        "credits_left": user.premium_minutes,
        "parallel_limit": parallel_limit(settings, user),
        "parallel_limit_from": "max_parallel_jobs" if configured is not None else "plan",
        "running_jobs": user.current_queue,
        "queue": _queue_counts(queue),
    }


def _queue_counts(queue: QueueInfo | None) -> dict[str, Any] | None:
    """MVSEP's waiting jobs per plan, as received (the shape is undocumented)."""
    if queue is None:
        return None
    counts = queue.queue if isinstance(queue.queue, dict) else None
    plan = queue.plan if isinstance(queue.plan, dict) else None
    return {"per_plan": counts, "your_plan": plan}


def render_table(summary: dict[str, Any]) -> str:
    limit_from = (
        "[mvsep] max_parallel_jobs"
        if summary["parallel_limit_from"] == "max_parallel_jobs"
        else "the plan; [mvsep] max_parallel_jobs unset"
    )
    running = summary["running_jobs"]
    rows = [
        ("account", summary["name"] or "(no name)"),
        ("host", summary["base_url"]),
        ("premium", "on" if summary["premium"] else "off"),
        ("credits left", f"{summary['credits_left']:g}"),
        ("parallel limit", f"{summary['parallel_limit']} (from {limit_from})"),
        ("running jobs", "unknown" if running is None else str(running)),
        ("queues", _queue_text(summary["queue"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _queue_text(queue: dict[str, Any] | None) -> str:
    if queue is None:
        return "unknown (MVSEP did not say)"
    parts: list[str] = []
    if queue["per_plan"]:
        parts.append(", ".join(f"{k} {v}" for k, v in queue["per_plan"].items()))
    plan = queue["your_plan"]
    if plan and "name" in plan:
        parts.append(f"your plan: {plan['name']} ({plan.get('queue', '?')} waiting)")
    return "; ".join(parts) or "unknown (MVSEP did not say)"
