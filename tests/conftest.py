"""Shared fixtures: a real MVSEP emulator on a random loopback port, and real audio files.

Module-specific fixtures live in the test modules that use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURES = SHARED / "mvsep-captures"


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Any]]:
    """Factory: ``make_emulator(premium=True, processing_s=0.2, ...)`` -> a started EmulatorServer.

    Every server it starts is stopped at the end of the test.
    """
    from daemon.emulator import EmulatorOptions, EmulatorServer

    started: list[Any] = []

    def factory(**options: Any) -> Any:
        server = EmulatorServer(EmulatorOptions(**options), host="127.0.0.1", port=0)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Any]) -> Any:
    """A free-account emulator with instant jobs."""
    return make_emulator()


@pytest.fixture
def audio_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a real audio file: ``audio_file("song.wav", seconds=3.0)``."""
    from daemon.emulator.audio import write_test_audio

    def factory(name: str = "song.wav", seconds: float = 2.0, **kwargs: Any) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_test_audio(path, seconds, **kwargs)
        return path

    return factory


@pytest.fixture
def captures() -> Path:
    """The folder of real MVSEP captures beside the project; skip when it is absent."""
    if not CAPTURES.is_dir():
        pytest.skip(f"real MVSEP captures not found at {CAPTURES} (only in the dev workspace)")
    return CAPTURES


@pytest.fixture
def daemons() -> Iterator[list[Any]]:
    """Daemons a test started (append them): each is stopped when the test ends."""
    started: list[Any] = []
    yield started
    for daemon in started:
        daemon.stop()
