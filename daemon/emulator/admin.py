"""``/_emulator/`` routes: faults, stats, jobs, reset and region steering over HTTP.

For scenarios where the emulator runs in another process (the CLI) and a test or a demo
needs to drive it. Never rate limited.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.emulator import answers
from daemon.emulator.faults import fault_from_json
from daemon.emulator.regions import UnknownRegion
from daemon.emulator.state import EmulatorState

AdminHandler = Callable[[EmulatorState, Request], Awaitable[Response]]


def admin_routes(state: EmulatorState) -> list[Route]:
    """The admin routes bound to ``state``."""
    handlers: list[tuple[str, AdminHandler, list[str]]] = [
        ("/_emulator/faults", _faults, ["POST", "GET"]),
        ("/_emulator/stats", _stats, ["GET"]),
        ("/_emulator/jobs", _jobs, ["GET"]),
        ("/_emulator/reset", _reset, ["POST"]),
        ("/_emulator/steer", _steer, ["POST", "GET"]),
    ]
    return [Route(path, _bound(h, state), methods=methods) for path, h, methods in handlers]


def _bound(handler: AdminHandler, state: EmulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(state, request)

    return endpoint


async def _faults(state: EmulatorState, request: Request) -> Response:
    """POST: arm a JSON fault or list of faults; GET: the armed ones."""
    if request.method == "GET":
        return JSONResponse([f.to_json() for f in state.faults.pending()])
    try:
        payload = json.loads(await request.body())
        items = payload if isinstance(payload, list) else [payload]
        faults = [fault_from_json(item) for item in items]
    except (ValueError, TypeError) as exc:
        return JSONResponse({"success": False, "message": str(exc)}, status_code=400)
    for fault in faults:
        state.faults.add(fault)
    return JSONResponse({"success": True, "armed": len(faults)})


async def _stats(state: EmulatorState, request: Request) -> Response:
    return JSONResponse(state.stats_json())


async def _jobs(state: EmulatorState, request: Request) -> Response:
    """Job snapshots by hash."""
    body = {
        h: {
            "upload_name": v.upload_name,
            "sep_type": v.sep_type,
            "options": v.options,
            "output_format": v.output_format,
            "state": v.state,
            "queued": v.queued,
            "region": v.region,
            "credits": v.credits,
            "created_at": answers.format_date(v.created_at),
            "failure": v.failure,
        }
        for h, v in state.snapshot().items()
    }
    return JSONResponse(body)


async def _reset(state: EmulatorState, request: Request) -> Response:
    """Forget jobs, accounts, faults, stats and rate windows (the steering stays)."""
    state.reset()
    return JSONResponse({"success": True})


async def _steer(state: EmulatorState, request: Request) -> Response:
    """GET: where the entry is steered and every region's url; POST ``{"region": NAME}``."""
    regions = state.regions
    if request.method == "POST":
        try:
            payload = json.loads(await request.body())
            regions.steer(str(payload["region"]))
        except (ValueError, TypeError, KeyError, UnknownRegion) as exc:
            message = str(exc) if isinstance(exc, UnknownRegion) else 'send {"region": NAME}'
            return JSONResponse({"success": False, "message": message}, status_code=400)
    return JSONResponse({"success": True, "region": regions.steered, "regions": regions.urls()})
