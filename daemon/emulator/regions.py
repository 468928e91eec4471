"""Regional hosts: several ports serving one state, and a steered entry.

The real ``https://mvsep.com/api`` is geo-steered to a regional host (``de``, ``hk``, ``de2``);
a job is stored in the region that created it: its status can be read from any host, its
files only from its own. The emulator gives each region its own loopback port, plus the
entry port (``base_url``), which acts as whichever region it is steered to.
"""

from __future__ import annotations

import threading


class UnknownRegion(ValueError):
    """A region name the emulator does not serve."""


class Regions:
    """Region names, their ports and urls, and where the entry is steered. Thread-safe."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._lock = threading.Lock()
        self._steered: str | None = names[0] if names else None
        self._by_port: dict[int, str] = {}
        self._urls: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        """Whether any region is configured."""
        return bool(self.names)

    def bind(self, name: str, port: int, url: str) -> None:
        """Record that region ``name`` serves on ``port`` at ``url`` (set by the server)."""
        self._check(name)
        with self._lock:
            self._by_port[port] = name
            self._urls[name] = url

    def region_for_port(self, port: int | None) -> str | None:
        """The region a request on local ``port`` reaches (the entry: the steered one)."""
        if not self.names:
            return None
        with self._lock:
            return self._by_port.get(port or -1, self._steered)

    def url(self, name: str) -> str:
        """The base url of region ``name``."""
        self._check(name)
        with self._lock:
            if name not in self._urls:
                raise UnknownRegion(f"region {name!r} is not serving yet")
            return self._urls[name]

    def urls(self) -> dict[str, str]:
        """Every region's base url."""
        with self._lock:
            return dict(self._urls)

    @property
    def steered(self) -> str | None:
        """The region the entry currently acts as."""
        with self._lock:
            return self._steered

    def steer(self, name: str) -> None:
        """Send the entry to region ``name`` from now on."""
        self._check(name)
        with self._lock:
            self._steered = name

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise UnknownRegion(f"unknown region {name!r}; regions: {', '.join(self.names)}")
