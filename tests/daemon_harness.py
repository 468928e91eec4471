"""Shared by the tests that run the whole daemon: a config file for one inbox, and a wait.

The daemon works on its own threads (or in its own process); what these tests watch is its
journal and the emulator, so they poll for a condition with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

DEADLINE_S = 60.0  # generous for a loaded machine; passing runs never wait it out


def write_config(
    tmp: Path,
    base_url: str,
    *,
    mvsep: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
    **inbox: Any,
) -> Path:
    """``tmp/config.toml``: inbox ``tmp/in`` (preset ``vocals``: 2 stems, wav16) filed into
    ``tmp/out``, journal and catalogue under ``tmp/state``, fast polls; ``inbox``, ``mvsep``
    and ``engine`` keys override."""
    (tmp / "in").mkdir(exist_ok=True)
    config = {
        "mvsep": {"base_url": base_url, "api_token": "harness-token-1", **(mvsep or {})},
        "journal": {"path": str(tmp / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(tmp / "state" / "algorithms.json")},
        "engine": {"poll_unknown_s": 0.3, "poll_max_s": 0.5, **(engine or {})},
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": [
            {
                "path": str(tmp / "in"),
                "preset": "vocals",
                "output": str(tmp / "out"),
                "settle_s": 0.3,
                "after_success": "keep",
                **inbox,
            }
        ],
    }
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
