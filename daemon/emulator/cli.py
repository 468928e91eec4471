"""``mvsep-watch emulator``: run the MVSEP emulator in the foreground until interrupted."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from daemon.emulator.faults import parse_fault_spec
from daemon.emulator.options import (
    DEFAULT_PEAKS_LEN,
    DEFAULT_RATE_LIMITS,
    OVER_LIMIT_MODES,
    RATE_ROUTES,
    EmulatorOptions,
)
from daemon.emulator.server import EmulatorServer


def parse_rate_limit(spec: str) -> tuple[str, int]:
    """``ROUTE=N`` (e.g. ``history=120``) -> ``("history", 120)``."""
    route, sep, number = spec.partition("=")
    route = route.strip()
    if not sep or route not in RATE_ROUTES:
        routes = ", ".join(sorted(RATE_ROUTES))
        raise argparse.ArgumentTypeError(f"expected ROUTE=N with ROUTE one of {routes}: {spec!r}")
    try:
        limit = int(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"N must be a whole number: {spec!r}") from None
    if limit < 1:
        raise argparse.ArgumentTypeError(f"N must be at least 1: {spec!r}")
    return route, limit


def build_parser() -> argparse.ArgumentParser:
    """The emulator's command-line options."""
    parser = argparse.ArgumentParser(prog="mvsep-watch emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    parser.add_argument("--premium", action="store_true", help="accounts are premium")
    parser.add_argument("--token", action="append", default=[], help="a valid api token (repeat)")
    parser.add_argument("--catalogue", type=Path, help="algorithms JSON to serve")
    parser.add_argument("--processing", type=float, default=2.0, help="processing seconds")
    parser.add_argument("--processing-jitter", type=float, default=0.0, help="± seconds")
    parser.add_argument("--waiting", type=float, default=1.0, help="seconds in the queue")
    parser.add_argument("--files-delay", type=float, default=0.0, help="done without files (s)")
    parser.add_argument("--expire-after", type=float, default=72 * 3600.0, help="results kept (s)")
    parser.add_argument("--chunk-seconds", type=float, default=600.0, help="distributing above")
    defaults = ", ".join(f"{r}={n}" for r, n in DEFAULT_RATE_LIMITS.items())
    parser.add_argument(
        "--rate-limit-per-min",
        type=int,
        default=None,
        help=f"one limit for every route (default per route: {defaults})",
    )
    parser.add_argument(
        "--rate-limit",
        type=parse_rate_limit,
        action="append",
        default=[],
        metavar="ROUTE=N",
        help="requests per minute on one route, e.g. history=120 (repeat)",
    )
    parser.add_argument("--no-rate-limit", action="store_true", help="never answer 429")
    parser.add_argument(
        "--parallel-limit", type=int, help="parallel jobs per account (default: free 1, premium 10)"
    )
    parser.add_argument(
        "--over-limit",
        choices=OVER_LIMIT_MODES,
        default="reject",
        help="past the parallel limit: reject the create (HTTP 400) or queue the job",
    )
    parser.add_argument(
        "--peaks-len",
        type=int,
        default=DEFAULT_PEAKS_LEN,
        help="numbers in each result file's peaks array (0: none)",
    )
    parser.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="NAME",
        help="serve a regional host on its own port (repeat; the entry acts as the first)",
    )
    parser.add_argument("--data-dir", type=Path, help="keep job files here (default: temp)")
    parser.add_argument(
        "--fault", action="append", default=[], help="KIND[:ENDPOINT][:key=value...] (repeat)"
    )
    return parser


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """Map parsed arguments to :class:`EmulatorOptions`."""
    return EmulatorOptions(
        premium=args.premium,
        tokens=tuple(args.token),
        catalogue_path=args.catalogue,
        processing_s=args.processing,
        processing_jitter_s=args.processing_jitter,
        waiting_s=args.waiting,
        files_delay_s=args.files_delay,
        expire_after_s=args.expire_after,
        chunk_seconds=args.chunk_seconds,
        rate_limit_per_min=args.rate_limit_per_min,
        rate_limits=dict(args.rate_limit),
        rate_limit=not args.no_rate_limit,
        parallel_limit=args.parallel_limit,
        over_limit=args.over_limit,
        peaks_len=args.peaks_len,
        regions=tuple(args.region),
        data_dir=args.data_dir,
    )


def main(argv: list[str], *, stop: threading.Event | None = None) -> int:
    """Run until Ctrl-C (or until ``stop`` is set). Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = [parse_fault_spec(spec) for spec in args.fault]
        options = options_from_args(args)
        server = EmulatorServer(options, host=args.host, port=args.port).start()
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    try:
        for fault in faults:
            server.add_fault(fault)
        print(f"MVSEP emulator listening on {server.base_url}", flush=True)
        for name, url in server.state.regions.urls().items():
            print(f"region {name} on {url}", flush=True)
        if server.steered is not None:
            print(f"entry steered to {server.steered} (POST /_emulator/steer)", flush=True)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
    return 0
