"""/metrics' live part: a real client and a real daemon that talked to the emulator.

Everything real: the emulator over loopback (its own 429 fault), the client's counters, the
shared pacer, a running Daemon (watchdog, engine, journal) that separates one file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from daemon_harness import wait_until
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import load_settings
from daemon.emulator import Fault
from daemon.jobs import JobState
from daemon.journal import INBOX_NOTE, Journal
from daemon.metrics import LiveStats, live_stats, pacer_figures, render
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer
from daemon.service import Daemon

TOKEN = "tok-metrics-secret-4242"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(body: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_client_counts_requests_by_route_and_its_429s(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emulator = make_emulator(premium=True, tokens=(TOKEN,), premium_minutes=321.5)
    emulator.add_fault(Fault(kind="http_429", endpoint="user", times=1, retry_after_s=1))
    pacer = Pacer()
    with MvsepClient(base_url=emulator.base_url, api_token=TOKEN, gate=pacer) as client:
        client.user()  # a 429 first (the fault), then the retry answered
        client.algorithms()
        sibling = client.with_base_url(emulator.base_url + "/")  # same host: the same client
        other = client.with_base_url("http://127.0.0.1:9")  # another region: its counters shared
        assert sibling is client and other.counters is client.counters
        calls = dict(client.counters.calls())
        figures = pacer_figures(pacer)
        live = LiveStats(
            api_calls=calls, pacer_waits=figures.waits, pacer_wait_s=figures.wait_s,
            headroom=figures.headroom, rate_limits=figures.rate_limits,
            credits_left=client.counters.credits_left,
        )  # fmt: skip
    assert calls == {("user", "429"): 1, ("user", "200"): 1, ("algorithms", "200"): 1}
    assert emulator.stats["rate_limited"] == 1  # the emulator agrees: one 429 sent
    assert client.counters.credits_left == 321.5
    assert figures.rate_limits == {"user": 120, "algorithms": 60}  # what the emulator sent
    # the limit less the pacer's safety margin (2) less the requests still in the window
    assert figures.headroom == {"user": 120 - 2 - 2, "algorithms": 60 - 2 - 1}
    with Journal(tmp_path / "journal.sqlite") as journal:
        body, _ = render(journal, live)
    found = samples(body)
    assert value(found, "mvsep_watch_api_calls_total", route="user", code="429") == 1
    assert value(found, "mvsep_watch_api_rate_limited_total", route="user") == 1
    assert value(found, "mvsep_watch_api_rate_limited_total", route="algorithms") == 0
    assert value(found, "mvsep_watch_credits_left") == 321.5
    assert value(found, "mvsep_watch_rate_limit", route="user") == 120
    assert TOKEN.encode() not in body


def write_config(tmp_path: Path, base_url: str) -> Path:
    (tmp_path / "in").mkdir()
    config = {
        "mvsep": {"base_url": base_url, "api_token": TOKEN, "max_parallel_jobs": 2},
        "journal": {"path": str(tmp_path / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(tmp_path / "state" / "algorithms.json")},
        "engine": {"retry_base_s": 0.2, "retry_cap_s": 1.0},
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": [{
            "name": "songs", "path": str(tmp_path / "in"), "preset": "vocals",
            "output": str(tmp_path / "out"), "settle_s": 0.3, "poll": True,
            "poll_interval_s": 0.3,
        }],
    }  # fmt: skip
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
def running(tmp_path: Path, make_emulator: Callable[..., Any]) -> Iterator[tuple[Daemon, Any]]:
    emulator = make_emulator(premium=True, tokens=(TOKEN,), processing_s=0.3)
    emulator.add_fault(Fault(kind="http_429", endpoint="get", times=1, retry_after_s=1))
    settings, _ = load_settings(write_config(tmp_path, emulator.base_url), env={})
    daemon = Daemon(settings, config_label="test")
    daemon.start()
    yield daemon, emulator
    daemon.stop()


def test_a_running_daemon_scraped(
    tmp_path: Path, running: tuple[Daemon, Any], audio_file: Callable[..., Path]
) -> None:
    daemon, emulator = running
    journal = daemon.journal
    assert journal is not None
    os.replace(audio_file("staging/song.wav", seconds=1.5), tmp_path / "in" / "song.wav")
    wait_until(
        lambda: [j.state for j in journal.recent_jobs(5)] == [JobState.FILED], "the job filed"
    )
    wait_until(lambda: "songs" in journal.notes_with(INBOX_NOTE), "the inbox's watch note")

    body, _ = render(journal, live_stats(daemon))

    found = samples(body)
    assert value(found, "mvsep_watch_jobs", inbox="songs", state="filed") == 1
    assert value(found, "mvsep_watch_submits_total", inbox="songs") == 1
    assert value(found, "mvsep_watch_drop_to_filed_seconds_count", inbox="songs") == 1
    assert value(found, "mvsep_watch_mvsep_processing_seconds_count", inbox="songs") == 1
    assert value(found, "mvsep_watch_api_calls_total", route="create", code="200") == 1
    assert value(found, "mvsep_watch_api_calls_total", route="get", code="429") == 1
    assert value(found, "mvsep_watch_api_rate_limited_total", route="get") == 1
    assert value(found, "mvsep_watch_api_rate_limited_total", route="create") == 0
    assert value(found, "mvsep_watch_slots_limit") == 2  # max_parallel_jobs
    assert value(found, "mvsep_watch_slots_in_use") == 0
    assert value(found, "mvsep_watch_credits_left") == 1000  # read at start, before the job
    assert value(found, "mvsep_watch_inbox_mode", inbox="songs", mode="polling") == 1
    assert value(found, "mvsep_watch_inbox_mode", inbox="songs", mode="native") == 0
    assert value(found, "mvsep_watch_rescans_missed_files_total", inbox="songs") == 0
    assert value(found, "mvsep_watch_rate_limit", route="get") == 60
    assert emulator.stats["rate_limited"] == 1
    assert TOKEN.encode() not in body
