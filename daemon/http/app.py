"""The WSGI application of the status server: routes, guards, answers.

=====================  =====================================================================
``GET /livez``         200 while the loops tick (:func:`daemon.http.health.liveness`); open
``GET /readyz``        ``application/health+json``, 503 when a check fails
``GET /``              the status page (:mod:`daemon.http.page`)
``GET /api/status.json``  ``mvsep-watch status --json``'s data
``POST /jobs/ID/retry``   the retry of ``jobs retry ID``: a request row in the journal
``GET /metrics``       ``daemon.metrics.render`` on a read-only journal connection (501 without
                       prometheus_client)
``GET|POST /login``    beyond loopback only: the form that sets the session cookie
=====================  =====================================================================

Every page but ``/livez`` passes :mod:`daemon.http.guard` first (the Host header on
loopback, the token beyond it); a POST also needs the same origin and the CSRF token.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import structlog

from daemon.config_http import HttpSection
from daemon.http import guard, page, view
from daemon.http.health import HEALTH_JSON, liveness
from daemon.journal import Journal

if TYPE_CHECKING:
    from daemon.service import Daemon

log = structlog.get_logger(__name__)

MAX_FORM_BYTES = 16 * 1024
_RETRY = re.compile(r"/jobs/(\d+)/retry")
_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    ),
]
HTML = "text/html; charset=utf-8"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> Request:
        headers = {
            k[5:].replace("_", "-").lower(): str(v)
            for k, v in environ.items()
            if k.startswith("HTTP_")
        }
        request = cls(
            method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
            path=str(environ.get("PATH_INFO") or "/"),
            query=parse_qs(str(environ.get("QUERY_STRING", ""))),
            headers=headers,
        )
        if request.method == "POST":
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
            raw = environ["wsgi.input"].read(length) if length > 0 else b""
            request.form = parse_qs(raw.decode("utf-8", "replace"))
        return request

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def text(code: int, message: str) -> Response:
    return Response(code, (message + "\n").encode())


def as_json(code: int, data: object, content_type: str = "application/json") -> Response:
    return Response(code, json.dumps(data, indent=2).encode(), content_type)


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(303, b"", headers=[("Location", location), *(headers or [])])


class StatusApp:
    """The pages of one running :class:`~daemon.service.Daemon`, by its ``[http]`` section
    (or ``section``). ``clock`` is monotonic seconds (a seam: the health tests move it on)."""

    def __init__(
        self,
        daemon: Daemon,
        *,
        section: HttpSection | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._daemon = daemon
        # fixed for the life of the process: a reload names [http] as needing a restart
        self._settings = section if section is not None else daemon.settings.http
        address = self._settings.address
        self._listen_host = address[0] if address is not None else "127.0.0.1"
        self._token = self._settings.secret() if self._settings.remote else None
        self._csrf = guard.new_csrf_token()
        self._clock = clock
        self._started_at = clock()
        self._account = view.AccountCache(self._credits_left)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self.respond(Request.from_environ(environ))
        except Exception:  # a page must not take the server down; the log says what broke
            log.exception("status page failed", path=environ.get("PATH_INFO"))
            response = text(500, "internal error: see the daemon's log")
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *_SECURITY_HEADERS,
            *response.headers,
        ]
        start_response(f"{response.code} {HTTPStatus(response.code).phrase}", headers)
        return [response.body]

    def respond(self, request: Request) -> Response:
        if request.path == "/livez":
            now = self._clock()
            code, body = liveness(view.loops(self._daemon), now, started_at=self._started_at)
            return as_json(code, body, HEALTH_JSON)
        if not self._settings.remote and not guard.host_allowed(
            request.headers.get("host"), self._listen_host
        ):
            return text(403, "forbidden: this server answers to its loopback address only")
        if request.path == "/login" and self._settings.remote:
            return self._login(request)
        if self._settings.remote and not guard.authorized(request.headers, self._token):
            if request.method == "GET" and request.path == "/":
                return Response(
                    401, page.render_login(csrf=self._csrf, failed=False).encode(), HTML
                )
            return text(401, "unauthorized: send Authorization: Bearer TOKEN ([http] token)")
        return self._route(request)

    def _route(self, request: Request) -> Response:
        if match := _RETRY.fullmatch(request.path):
            if request.method != "POST":
                return text(405, "method not allowed: the retry is a POST")
            return self._retry(request, int(match.group(1)))
        if request.method != "GET":
            return text(405, "method not allowed")
        if request.path == "/readyz":
            code, body = view.readiness(self._daemon, self._clock(), started_at=self._started_at)
            return as_json(code, body, HEALTH_JSON)
        if request.path == "/":
            return self._page(request)
        if request.path == "/api/status.json":
            return as_json(200, view.status_data(self._daemon))
        if request.path == "/metrics":
            return self._metrics()
        return text(404, "not found")

    def _page(self, request: Request) -> Response:
        wanted = (request.query.get("request") or [""])[0]
        request_id = int(wanted) if wanted.isdigit() else None
        data = view.page_data(self._daemon, self._account, request_id)
        return Response(200, page.render_page(data, csrf=self._csrf).encode(), HTML)

    def _login_page(self, code: int, *, failed: bool) -> Response:
        return Response(code, page.render_login(csrf=self._csrf, failed=failed).encode(), HTML)

    def _cross_site(self, request: Request) -> bool:
        return not (
            guard.same_origin(request.headers)
            and guard.same_text(request.field("csrf"), self._csrf)
        )

    def _retry(self, request: Request, job_id: int) -> Response:
        if self._cross_site(request):
            log.warning("status page: a cross-site retry refused", job_id=job_id)
            return text(403, "forbidden: not a request from this status page")
        journal, engine = self._daemon.journal, self._daemon.engine
        if journal is None or engine is None:
            return text(503, "the daemon is not running")
        job = journal.jobs_by_id([job_id]).get(job_id)
        if job is None:
            return text(404, f"no job {job_id}")
        request_id = journal.add_request("retry", job_id)  # what `jobs retry` posts
        engine.wake()
        log.info("retry asked on the status page", job_id=job_id, file=str(job.source.path))
        return redirect(f"/?request={request_id}")

    def _login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._login_page(200, failed=False)
        if request.method != "POST" or self._cross_site(request):
            return text(403, "forbidden: not a request from this status page")
        token = self._token
        if token is None or not guard.same_text(request.field("token"), token):
            log.warning("status page: a sign-in with a wrong token")
            return self._login_page(401, failed=True)
        cookie = f"{guard.COOKIE}={guard.session_value(token)}; HttpOnly; SameSite=Strict; Path=/"
        return redirect("/", [("Set-Cookie", cookie)])

    def _metrics(self) -> Response:
        from daemon import metrics

        journal = self._daemon.journal
        if journal is None:
            return text(503, "the daemon is not running")
        try:  # a connection of its own: a scrape of a big journal never holds the daemon's
            with Journal(journal.path, read_only=True) as reader:
                body, content_type = metrics.render(reader, metrics.live_stats(self._daemon))
        except metrics.MetricsUnavailable as exc:  # prometheus_client is not installed
            return text(501, f"not implemented: {exc}")
        return Response(200, body, content_type)

    def _credits_left(self) -> float:
        client = self._daemon.client
        if client is None:
            raise RuntimeError("no client")
        return float(client.user().premium_minutes)
