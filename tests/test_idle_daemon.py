"""An idle daemon still answers at once (issue 12): the whole Daemon on temp folders, its
SQLite journal, the emulator over loopback, real inotify.

Idle, the engine's scheduler sleeps 30 s, the request thread's safety net is 30 s and the
checker backs off to 10 s: an answer or a file seen within a few seconds can only have come
from the wake paths (a command's journal commit, a file event).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until, write_config

from daemon.config import load_settings
from daemon.journal import Journal
from daemon.journal.control import post_request, request_outcomes
from daemon.service import Daemon
from daemon.watcher.pace import IDLE_MAX_S

PROMPT_S = 5.0  # well under every idle sleep above, generous for a loaded machine


def start(config: Path, daemons: list[Daemon]) -> Daemon:
    settings, _ = load_settings(config, env={})
    daemon = Daemon(settings, config_label=str(config))
    daemon.start()
    daemons.append(daemon)
    return daemon


def asleep(stamp: Callable[[], float | None], for_s: float) -> Callable[[], bool]:
    def check() -> bool:
        last = stamp()
        return last is not None and time.monotonic() - last > for_s

    return check


def test_a_request_written_while_the_daemon_is_idle_is_answered_at_once(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    emulator = make_emulator(premium=True)
    daemon = start(write_config(tmp_path, emulator.base_url), daemons)
    engine = daemon.engine
    assert engine is not None and daemon.journal is not None
    wait_until(asleep(lambda: engine.last_tick, 1.5), "the engine idle")
    posted = time.monotonic()
    (request_id,) = post_request(daemon.journal.path, "forget", [4242])  # as `jobs forget`

    def answered() -> bool:
        return request_outcomes(daemon.journal.path, [request_id])[0].state != "pending"

    wait_until(answered, "the answer")
    assert time.monotonic() - posted < PROMPT_S
    (outcome,) = request_outcomes(daemon.journal.path, [request_id])
    assert outcome.state == "refused" and "no job 4242" in (outcome.result or "")


def test_a_file_dropped_into_an_idle_inbox_is_seen_at_once(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    emulator = make_emulator(premium=True)
    daemon = start(write_config(tmp_path, emulator.base_url), daemons)
    watcher = daemon.watcher
    assert watcher is not None and daemon.journal is not None
    wait_until(asleep(lambda: watcher.last_tick, 2.5), "the checker backed off")  # 1, 2, 4 s...
    dropped = time.monotonic()
    audio_file("in/song.wav", seconds=1.0)

    def journaled() -> bool:
        with Journal(daemon.journal.path, read_only=True) as journal:  # type: ignore[union-attr]
            return bool(journal.recent_jobs(5))

    wait_until(journaled, "the file journaled")
    assert time.monotonic() - dropped < min(PROMPT_S, IDLE_MAX_S)
