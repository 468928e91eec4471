"""Run the emulator with uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvicorn

from daemon.emulator.app import EmulatorApp
from daemon.emulator.dropping import install_log_filter
from daemon.emulator.faults import Fault
from daemon.emulator.options import EmulatorOptions
from daemon.emulator.state import EmulatorState, JobView

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0  # well under 1 s on an idle machine
logger = logging.getLogger(__name__)


class EmulatorServer:
    """A real HTTP server speaking the MVSEP API on ``host``; ``port=0`` picks a free port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``clock`` (monotonic
    seconds) drives job phases, expiry and rate-limit windows; tests may pass a manual one.
    With ``options.regions``, each region also serves on a port of its own
    (:meth:`region_url`); ``base_url`` is the entry, acting as the region :meth:`steer` chose.
    """

    def __init__(
        self,
        options: EmulatorOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or EmulatorOptions()
        self.host = host
        self._requested_port = port
        self._owns_data_dir = self.options.data_dir is None
        data_dir = self.options.data_dir or Path(tempfile.mkdtemp(prefix="mvsep-emu-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state = EmulatorState(self.options, data_dir, clock=clock)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (IPv6 hosts in brackets): the steered entry."""
        return self._url(self.port)

    def _url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    def region_url(self, name: str) -> str:
        """The base url of region ``name`` (``ValueError`` for a region not configured)."""
        return self.state.regions.url(name)

    def steer(self, name: str) -> None:
        """Make the entry (``base_url``) act as region ``name`` from now on."""
        self.state.regions.steer(name)

    @property
    def steered(self) -> str | None:
        """The region the entry acts as (None without regions)."""
        return self.state.regions.steered

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(128)
        self._sockets.append(sock)
        return sock

    def start(self) -> EmulatorServer:
        """Bind (the entry, then one port per region), start uvicorn in a daemon thread and
        wait until it serves."""
        install_log_filter()
        try:
            self.port = int(self._bind(self._requested_port).getsockname()[1])
            for name in self.options.regions:
                port = int(self._bind(0).getsockname()[1])
                self.state.regions.bind(name, port, self._url(port))
        except OSError:
            self._close_sockets()
            raise
        config = uvicorn.Config(
            EmulatorApp(self.state).build(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=0.25,  # type: ignore[arg-type]
            timeout_keep_alive=30,  # idle keep-alive; short values race with reusing clients
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=self._run, args=(server, list(self._sockets)), name="mvsep-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.002)
        return self

    @staticmethod
    def _run(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        try:
            asyncio.run(server.serve(sockets=sockets))
        except Exception:  # a crash must not vanish into an unhandled thread exception
            logger.exception("the emulator's server thread failed")
        finally:
            for sock in sockets:
                sock.close()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def stop(self) -> None:
        """Stop serving, stop the DSP workers and remove the temporary data directory."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("the emulator's server thread is still stopping")
        self._server = self._thread = None
        self._sockets = []
        self.state.close()
        if self._owns_data_dir:
            self.state.remove_data()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add_fault(self, fault: Fault) -> None:
        """Arm an injected fault."""
        self.state.faults.add(fault)

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self.state.faults.clear()

    def reset(self) -> None:
        """Forget jobs, accounts, faults, stats and rate-limit windows."""
        self.state.reset()

    @property
    def stats(self) -> dict[str, object]:
        """Calls per endpoint, creates accepted/rejected, 429s sent, cancels, faults fired."""
        return self.state.stats_json()

    @property
    def jobs(self) -> dict[str, JobView]:
        """Snapshots of every job, by hash."""
        return self.state.snapshot()
