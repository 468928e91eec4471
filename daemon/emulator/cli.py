"""``mvsep-watch emulator``: run the MVSEP emulator in the foreground until interrupted."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from daemon.emulator.faults import parse_fault_spec
from daemon.emulator.options import EmulatorOptions
from daemon.emulator.server import EmulatorServer


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
    parser.add_argument("--rate-limit-per-min", type=int, default=60)
    parser.add_argument("--no-rate-limit", action="store_true", help="never answer 429")
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
        rate_limit=not args.no_rate_limit,
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
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
    return 0
