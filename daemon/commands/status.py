"""``mvsep-watch status``: the journal's view for a person (tables) or a script (``--json``).

Reads the journal read-only, without the daemon's lock: it works while the daemon runs.
"""

from __future__ import annotations

import argparse

from daemon.commands import SubParsers, load_config


def register(sub: SubParsers) -> None:
    status = sub.add_parser("status")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--limit", type=int, default=20, help="recent jobs to list")
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    from daemon.status import print_status

    settings, _ = load_config(args)
    return print_status(settings, as_json=args.json, limit=args.limit)
