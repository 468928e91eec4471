"""The daemon's small HTTP server: health, the status page, status JSON, metrics.

Off unless ``[http] listen`` is set (``"127.0.0.1:8787"``). On loopback by default; any
other address needs ``allow_remote = true`` (warned about at start) and a token for every
page but ``/livez``. :func:`start_http` is what :class:`~daemon.service.Daemon` calls once
its parts run; the routes are in :mod:`daemon.http.app`.

* :mod:`~daemon.http.server`: the threaded ``wsgiref`` server;
* :mod:`~daemon.http.app`: routes and guards; :mod:`~daemon.http.guard` (PURE): Host,
  token, cookie, same-origin and CSRF rules;
* :mod:`~daemon.http.health` (PURE): ``/livez`` and ``/readyz``;
* :mod:`~daemon.http.view`: what the pages read from the daemon and its journal;
  :mod:`~daemon.http.page` (PURE): the HTML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from daemon.http.app import StatusApp
from daemon.http.server import StatusServer
from daemon.logs import register_secret

if TYPE_CHECKING:
    from daemon.service import Daemon

__all__ = ["StatusApp", "StatusServer", "start_http"]

log = structlog.get_logger(__name__)


def start_http(daemon: Daemon, *, where: str = "config") -> StatusServer | None:
    """Start the server ``[http] listen`` asks for (None when it is empty)."""
    section = daemon.settings.http
    address = section.address
    if address is None:
        return None
    register_secret(section.secret())
    server = StatusServer(StatusApp(daemon), *address, where=where)
    server.start()
    if section.remote:
        log.warning(
            "status page listens beyond loopback: every page but /livez needs the [http] token",
            listen=section.listen,
            url=server.url,
        )
    else:
        log.info("status page listening", url=server.url)
    return server
