"""Shared by the status-server tests: a real Daemon against the emulator, with ``[http]``.

The daemon runs on this process's threads with its server on 127.0.0.1 (port 0: a free
one, read back from ``daemon.http.port``); the tests speak plain HTTP to it with httpx.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from daemon_harness import write_config

from daemon.config import load_settings
from daemon.jobs import Job
from daemon.journal import Journal
from daemon.service import Daemon


def http_config(tmp: Path, base_url: str, http: dict[str, Any], **kwargs: Any) -> Path:
    """:func:`daemon_harness.write_config` plus an ``[http]`` section."""
    path = write_config(tmp, base_url, **kwargs)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["http"] = http
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def start(config: Path, daemons: list[Daemon], env: dict[str, str] | None = None) -> Daemon:
    settings, _ = load_settings(config, env=env or {})
    daemon = Daemon(settings, config_label=str(config))
    daemons.append(daemon)
    daemon.start()
    return daemon


def base_url(daemon: Daemon) -> str:
    assert daemon.http is not None
    return daemon.http.url


def get(daemon: Daemon, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(base_url(daemon) + path, timeout=10, **kwargs)


def jobs(journal_path: Path) -> list[Job]:
    if not journal_path.exists():
        return []
    with Journal(journal_path, read_only=True) as journal:
        return journal.recent_jobs(20)


def checks(response: httpx.Response) -> dict[str, str]:
    """``/readyz``'s checks: name -> pass/warn/fail."""
    body = response.json()
    return {name: entries[0]["status"] for name, entries in body["checks"].items()}
