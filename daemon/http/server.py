"""The threaded WSGI server that serves :class:`~daemon.http.app.StatusApp`.

The standard library's ``wsgiref`` server with ``ThreadingMixIn``: one thread per request
(daemon threads, so a slow client never holds a stop), no asyncio beside the daemon's
threads. IPv6 addresses (``[::1]:8787``) get an IPv6 socket. Its own access lines go to
structlog at DEBUG, never to stderr. Idle, its loop wakes only every :data:`IDLE_POLL_S`
(``serve_forever`` checks for a stop between waits); a stop ends the wait at once with a
connection of its own.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import structlog

from daemon.errors import ConfigError

log = structlog.get_logger(__name__)

IDLE_POLL_S = 30.0
"""How long the server's loop waits for a connection before it looks for a stop request
(the standard library's default, 0.5 s, woke an idle daemon twice a second)."""


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", line=format % args, client=self.client_address[0])

    def get_stderr(self) -> Any:  # wsgiref's error stream: into the log as well
        return _LogStream()


class _LogStream:
    def write(self, text: str) -> None:
        if text.strip():
            log.warning("http server error", error=text.strip())

    def flush(self) -> None:
        return None


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class StatusServer:
    """Serves ``app`` on ``host:port`` (port 0: any free one; see :attr:`port`) in a thread."""

    def __init__(self, app: Any, host: str, port: int, *, where: str = "config") -> None:
        kind = _Server6 if ":" in host else _Server
        try:
            self._server = kind((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"{where}: [http] listen: cannot listen on {host}:{port}: "
                f"{exc.strerror or exc} — choose another port or stop what uses it"
            ) from None
        self._server.set_app(app)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": IDLE_POLL_S},
            name="http-server",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        if self._thread is not None:
            deadline = time.monotonic() + timeout_s
            stopper = threading.Thread(target=self._server.shutdown, daemon=True)
            stopper.start()
            while stopper.is_alive() and time.monotonic() < deadline:
                self._wake()  # the loop sees the stop request once its wait ends
                stopper.join(0.05)
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
        self._server.server_close()

    def _wake(self) -> None:
        """Connect to the server so that its loop's wait for a connection ends now."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        try:
            socket.create_connection((host, self.port), timeout=0.2).close()
        except OSError:
            pass  # the loop ends at its next wait's end instead
