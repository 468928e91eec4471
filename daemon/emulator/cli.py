"""``mvsep-watch emulator``: run the MVSEP emulator in the foreground until interrupted."""

from __future__ import annotations

import argparse
import textwrap
import threading
from pathlib import Path

from daemon.emulator.faults import ENDPOINTS, FAULT_KINDS, parse_fault_spec
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


DESCRIPTION = """\
Run the local MVSEP emulator in the foreground until Ctrl-C: the MVSEP API on a loopback
port, with real audio stems (a DSP split), rate limits, parallel limits, credits, expiry
and history. Point a config's [mvsep] base_url at the URL it prints.

{faults}
Example: --fault http_5xx:create:times=2:status=503. Reference: docs/emulator.md."""


def build_parser() -> argparse.ArgumentParser:
    """The emulator's command-line options (plain-text help, every default shown)."""
    parser = argparse.ArgumentParser(
        prog="mvsep-watch emulator",
        description=DESCRIPTION.format(faults=_fault_lines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="loopback address to bind (default: %(default)s)")
    add("--port", type=int, default=0, metavar="N", help="port (default: 0, a free one)")
    add("--premium", action="store_true", help="accounts are premium (default: free)")
    add(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a valid API token (repeat; default: any non-empty token is valid)",
    )
    add(
        "--catalogue",
        type=Path,
        metavar="PATH",
        help="algorithms JSON to serve (default: the built-in catalogue)",
    )
    add("--processing", type=float, default=2.0, metavar="S", help=_s("processing time"))
    add("--processing-jitter", type=float, default=0.0, metavar="S", help=_s("± jitter on it"))
    add("--waiting", type=float, default=1.0, metavar="S", help=_s("time in the queue"))
    add(
        "--files-delay",
        type=float,
        default=0.0,
        metavar="S",
        help=_s("time a done job is listed without files"),
    )
    add(
        "--expire-after",
        type=float,
        default=72 * 3600.0,
        metavar="S",
        help=_s("how long results are kept"),
    )
    add(
        "--chunk-seconds",
        type=float,
        default=600.0,
        metavar="S",
        help=_s("audio longer than this is split into chunks (distributing)"),
    )
    defaults = ", ".join(f"{r}={n}" for r, n in DEFAULT_RATE_LIMITS.items())
    add(
        "--rate-limit-per-min",
        type=int,
        default=None,
        metavar="N",
        help=f"one limit for every route (default per route: {defaults})",
    )
    add(
        "--rate-limit",
        type=parse_rate_limit,
        action="append",
        default=[],
        metavar="ROUTE=N",
        help="requests per minute on one route, e.g. history=120 (repeat; default: as above)",
    )
    add("--no-rate-limit", action="store_true", help="never answer 429 (default: limits on)")
    add(
        "--parallel-limit",
        type=int,
        metavar="N",
        help="parallel jobs per account (default: free 1, premium 10)",
    )
    add(
        "--over-limit",
        choices=OVER_LIMIT_MODES,
        default="reject",
        help="past the parallel limit: reject the create (HTTP 400) or queue the job "
        "(default: %(default)s)",
    )
    add(
        "--peaks-len",
        type=int,
        default=DEFAULT_PEAKS_LEN,
        metavar="N",
        help="numbers in each result file's peaks array, 0: none (default: %(default)s)",
    )
    add(
        "--region",
        action="append",
        default=[],
        metavar="NAME",
        help="serve a regional host on its own port (repeat; the entry acts as the first; "
        "default: one host)",
    )
    add(
        "--data-dir",
        type=Path,
        metavar="PATH",
        help="keep job files here (default: a temporary folder)",
    )
    add(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:ENDPOINT][:KEY=VALUE...]",
        help="inject a fault (repeat; kinds above; default: none)",
    )
    return parser


def _fault_lines() -> str:
    kinds = "Fault kinds for --fault: " + ", ".join(sorted(FAULT_KINDS)) + "."
    endpoints = "Endpoints: " + ", ".join(sorted(ENDPOINTS)) + "."
    return "\n".join(textwrap.wrap(kinds, 88) + textwrap.wrap(endpoints, 88))


def _s(what: str) -> str:
    return f"{what}, in seconds (default: %(default)s)"


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
