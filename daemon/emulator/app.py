"""The emulated MVSEP API as a Starlette app.

Every ``/api/`` route goes through :meth:`EmulatorApp.api`: stats, parameters, the rate
limit, injected HTTP faults, the unknown-parameter check, then the route's handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from daemon.emulator import answers
from daemon.emulator.admin import admin_routes
from daemon.emulator.answers import Answer, error_message, error_plain
from daemon.emulator.creating import create_job
from daemon.emulator.dropping import DropLayer
from daemon.emulator.jobs import Job
from daemon.emulator.state import Account, EmulatorState
from daemon.emulator.validation import unknown_params

Params = dict[str, str]
Handler = Callable[[Request, Params, UploadFile | None], Awaitable[Answer]]
HTTP_FAULTS = frozenset({"http_5xx", "http_429", "slow"})


def base_url_of(request: Request) -> str:
    """``http://host:port`` as the client addressed us (so ``[::1]`` works)."""
    return str(request.base_url).rstrip("/")


def local_port(request: Request) -> int | None:
    """The port of ours the request came in on (each region has its own)."""
    server = request.scope.get("server")
    return int(server[1]) if server else None


def to_response(answer: Answer) -> Response:
    """An :class:`Answer` as a JSON response."""
    return JSONResponse(answer.body, status_code=answer.status_code, headers=answer.headers)


class EmulatorApp:
    """Routes bound to one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def build(self) -> DropLayer:
        """The ASGI app: Starlette routes wrapped by the connection-dropping layer."""
        api = self.api
        routes = [
            Route("/api/separation/create", api("create", self.create), methods=["POST"]),
            Route("/api/separation/get", api("get", self.get), methods=["GET"]),
            Route(
                "/api/separation/get-remote", api("get_remote", self.get_remote), methods=["GET"]
            ),
            Route("/api/separation/cancel", api("cancel", self.cancel), methods=["POST"]),
            Route("/api/app/algorithms", api("algorithms", self.algorithms), methods=["GET"]),
            Route("/api/app/user", api("user", self.user), methods=["GET"]),
            Route("/api/app/login", api("login", self.login), methods=["POST"]),
            Route("/api/app/queue", api("queue", self.queue), methods=["GET"]),
            Route("/api/app/separation_history", api("history", self.history), methods=["GET"]),
            Route("/storage/temp/{hash}", self.download_input, methods=["GET", "HEAD"]),
            Route("/storage/{hash}/{filename}", self.download_stem, methods=["GET", "HEAD"]),
            *admin_routes(self.state),
        ]
        return DropLayer(Starlette(routes=routes), self.state)

    # -- the common path of /api/ calls --------------------------------------------------
    def api(self, endpoint: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with stats, rate limit, faults and parameter checks."""

        async def route(request: Request) -> Response:
            self.state.count_call(endpoint)
            self.state.settle()
            params, upload = await self._params(request)
            try:
                answer = await self._answer(request, endpoint, handler, params, upload)
            finally:
                if upload is not None:
                    await upload.close()
            return to_response(answer)

        return route

    async def _answer(
        self,
        request: Request,
        endpoint: str,
        handler: Handler,
        params: Params,
        upload: UploadFile | None,
    ) -> Answer:
        client = request.client.host if request.client else "unknown"
        decision = self.state.rate_hit(endpoint, params.get("api_token") or f"ip:{client}")
        if decision.retry_after_s is not None:
            answer = error_plain("Too Many Attempts.", 429)
        else:
            answer = await self._faulted(endpoint) or await self._checked(
                request, endpoint, handler, params, upload
            )
        answer.headers = {**decision.headers(), **answer.headers}
        delay = self.state.faults.take(endpoint, {"delay_answer"})
        if delay is not None:  # the work is done (a create's job exists); the answer waits
            await asyncio.sleep(delay.delay_s)
        return answer

    async def _checked(
        self,
        request: Request,
        endpoint: str,
        handler: Handler,
        params: Params,
        upload: UploadFile | None,
    ) -> Answer:
        names = set(params) | ({"audiofile"} if upload is not None else set())
        return unknown_params(endpoint, names) or await handler(request, params, upload)

    async def _faulted(self, endpoint: str) -> Answer | None:
        fault = self.state.faults.take(endpoint, HTTP_FAULTS)
        if fault is None:
            return None
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind == "http_429":
            with self.state.lock:
                self.state.stats.rate_limited += 1
            retry = {"Retry-After": str(max(0, round(fault.retry_after_s)))}
            return Answer(429, {"success": False, "message": "Too Many Attempts."}, retry)
        return Answer(fault.status, {"success": False, "message": "Server Error"})

    async def _params(self, request: Request) -> tuple[Params, UploadFile | None]:
        params: Params = dict(request.query_params)
        upload: UploadFile | None = None
        if request.method == "POST":
            form = await request.form(max_part_size=16 * 1024 * 1024)
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key == "audiofile" and upload is None:
                        upload = value
                    else:
                        params[key] = value.filename or ""
                else:
                    params[key] = value
        return params, upload

    def _account(self, params: Params) -> Account | None:
        return self.state.account_for(params.get("api_token"))

    def _region(self, request: Request) -> str | None:
        """The region the request reached (None when the emulator has no regions)."""
        return self.state.regions.region_for_port(local_port(request))

    def _home_url(self, request: Request, job: Job) -> str:
        """The base url of the job's region (its files are served only there)."""
        if job.region is None:
            return base_url_of(request)
        return self.state.regions.url(job.region)

    # -- separation ----------------------------------------------------------------------
    async def create(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``POST /api/separation/create``."""
        account = self._account(params)
        if account is None:
            return error_message("Invalid api_token", 401)
        answer = await create_job(
            self.state,
            account,
            params,
            upload,
            base_url=base_url_of(request),
            region=self._region(request),
        )
        if answer.status_code == 200 and self.state.faults.take("create", {"drop_after_create"}):
            request.state.emulator_drop = "answer"
        return answer

    async def get(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``GET /api/separation/get``."""
        job_hash = params.get("hash", "")
        if not job_hash:
            return error_message("The hash field is required.")
        if self.state.faults.take("get", {"hash_not_found"}):
            return answers.not_found()
        now = self.state.clock()
        with self.state.lock:
            job = self.state.jobs.get(job_hash)
            if job is None:
                return answers.not_found()
            phase = job.phase(now)
            if phase.status == "done" and phase.files_visible:
                fault = self.state.faults.take("get", {"done_without_files"})
                if fault is not None:
                    job.files_hidden_until = now + fault.delay_s
                    phase = job.phase(now)
        if phase.status == "expired":
            return answers.not_found()
        self.state.log_get(job_hash, phase.status, phase.files_visible, now)
        queue = self.state.queue_position(job) if phase.status == "waiting" else (0, 0)
        return Answer(
            200, answers.status_body(job, phase, base_url=self._home_url(request, job), queue=queue)
        )

    async def get_remote(
        self, request: Request, params: Params, upload: UploadFile | None
    ) -> Answer:
        """``GET /api/separation/get-remote``: the url download's status."""
        job_hash = params.get("hash", "")
        if not job_hash:
            return error_message("The hash field is required.")
        now = self.state.clock()
        with self.state.lock:
            job = self.state.jobs.get(job_hash)
            if (
                job is None
                or job.source_url is None
                or self.state.faults.take("get_remote", {"hash_not_found"})
            ):
                return answers.not_found()
            phase = job.phase(now)
            fetched = job.duration_s is not None
        if phase.status in ("expired",):
            return answers.not_found()
        if phase.status == "failed":
            return Answer(
                200, {"success": True, "status": "failed", "data": {"message": job.failure}}
            )
        if fetched:
            link = f"{self._home_url(request, job)}/api/separation/get?hash={job.hash}"
            return Answer(
                200, {"success": True, "status": "done", "data": {"link": link, "hash": job.hash}}
            )
        count, order = self.state.queue_position(job)
        data = {"queue_count": count, "current_order": order}
        return Answer(200, {"success": True, "status": "waiting", "data": data})

    async def cancel(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``POST /api/separation/cancel``."""
        account = self._account(params)
        if account is None:
            return error_message("Invalid api_token", 401)
        if not params.get("hash"):
            return error_message("The hash field is required.")
        ok, message = self.state.cancel(account, params["hash"])
        return Answer(200, {"success": ok, "data": {"message": message}})

    # -- site and user -------------------------------------------------------------------
    async def algorithms(
        self, request: Request, params: Params, upload: UploadFile | None
    ) -> Answer:
        """``GET /api/app/algorithms``: the bare array."""
        return Answer(200, self.state.catalogue.raw)

    def _user_data(self, account: Account) -> dict[str, Any]:
        with self.state.lock:
            minutes = account.premium_minutes
        return {
            "name": account.name,
            "email": account.email,
            "api_token": account.token,
            "created_at": "2024-01-01 00:00:00",
            "updated_at": "2024-01-01 00:00:00",
            "premium_minutes": int(minutes) if float(minutes).is_integer() else minutes,
            "premium_enabled": 1 if account.premium else 0,
            "long_filenames_enabled": 0,
        }

    async def user(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``GET /api/app/user``."""
        account = self._account(params)
        if account is None:
            return error_plain("Invalid api_token")
        data = self._user_data(account) | {"current_queue": self.state.in_flight(account)}
        return Answer(200, {"success": True, "data": data})

    async def login(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``POST /api/app/login``: any non-empty email and password."""
        missing = {
            name: [f"The {name} field is required."]
            for name in ("email", "password")
            if not params.get(name, "").strip()
        }
        if missing:
            return error_plain(missing)
        account = self.state.login(params["email"].strip())
        return Answer(200, {"success": True, "data": self._user_data(account)})

    async def queue(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``GET /api/app/queue``: waiting jobs per plan."""
        now = self.state.clock()
        with self.state.lock:
            counts = {"free": 0, "premium": 0}
            for job in self.state.jobs.values():
                if job.phase(now).status == "waiting":
                    account = self.state.accounts.get(job.token)
                    counts["premium" if account and account.premium else "free"] += 1
        account = self._account(params)
        plan = "premium" if account is not None and account.premium else "free"
        data = {"queue": counts, "plan": {"name": plan, "queue": counts[plan]}}
        return Answer(200, {"success": True, "data": data})

    async def history(self, request: Request, params: Params, upload: UploadFile | None) -> Answer:
        """``GET /api/app/separation_history``: newest first, ``limit`` at most 20."""
        account = self._account(params)
        if account is None:
            return error_plain("Invalid api_token")
        try:
            start = int(params.get("start", "0") or 0)
            limit = int(params.get("limit", "20") or 20)
        except ValueError:
            return error_message("start and limit must be integers")
        if not 1 <= limit <= 20 or start < 0:
            return error_message("limit must be between 1 and 20 and start at least 0")
        now = self.state.clock()
        with self.state.lock:
            mine = [j for j in self.state.jobs.values() if j.token == account.token]
            mine.sort(key=lambda j: j.id, reverse=True)
            data = [
                answers.history_entry(j, j.phase(now), now) for j in mine[start : start + limit]
            ]
        return Answer(200, {"success": True, "data": data})

    # -- result files --------------------------------------------------------------------
    async def download_input(self, request: Request) -> Response:
        """``GET /storage/temp/<hash>``: the job's input."""
        return await self._download(request, request.path_params["hash"], None)

    async def download_stem(self, request: Request) -> Response:
        """``GET /storage/<hash>/<file>``: one stem (Range supported)."""
        return await self._download(
            request, request.path_params["hash"], request.path_params["filename"]
        )

    async def _download(self, request: Request, job_hash: str, filename: str | None) -> Response:
        self.state.count_call("download")
        fault = await self._faulted("download")
        if fault is not None:
            return to_response(fault)
        self.state.settle()
        now = self.state.clock()
        region = self._region(request)
        with self.state.lock:
            job = self.state.jobs.get(job_hash)
            if (
                job is None
                or job.phase(now).status in ("expired", "cancelled")
                or job.region != region  # stored in another region: not on this host
            ):
                return JSONResponse({"success": False, "message": "Not found"}, status_code=404)
            if filename is None:
                path, name = job.input_path, job.hash
            elif job.dsp_done_mono is not None and filename in {s.filename for s in job.files}:
                path, name = job.job_dir / filename, filename
            else:
                return JSONResponse({"success": False, "message": "Not found"}, status_code=404)
            self.state.stats.downloads += 1
        if self.state.faults.take("download", {"drop_download"}):
            request.state.emulator_drop = "body"
        elif "range" not in request.headers:
            throttle = self.state.faults.take("download", {"throttle_download"})
            if throttle is not None:
                return throttled_file(path, name, seconds=throttle.delay_s)
        return FileResponse(path, filename=name)


THROTTLE_PIECES = 20


def throttled_file(path: Path, name: str, *, seconds: float) -> StreamingResponse:
    """Fault ``throttle_download``: the file in 20 pieces spread over ``seconds``."""
    size = path.stat().st_size
    piece = max(1, -(-size // THROTTLE_PIECES))

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as fh:
            while chunk := fh.read(piece):
                yield chunk
                await asyncio.sleep(seconds / THROTTLE_PIECES)

    headers = {
        "content-length": str(size),
        "content-disposition": f'attachment; filename="{name}"',
    }
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)
