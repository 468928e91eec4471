"""Issue 7 through the whole daemon or engine, against the real emulator over loopback.

* a preset using all ten fields of sep_type 121 (add_opt10 a text field) is sent with every
  option, resolved against the catalogue, and a done answer with long ``peaks`` arrays files
  normally;
* the real client and the real Pacer against the emulator's per-route limits (60 on ``get``,
  120 on ``user`` and history) use more than 60 calls a minute in total without one 429; the
  emulator and the pacer share a clock whose ``sleep`` jumps, so no test waits a minute;
* "File or File Hash not found" from ``get`` is read as not found (retried: no proof of expiry).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import soundfile
import tomli_w
from daemon_harness import wait_until
from test_engine_rig import rig

from daemon.config import load_settings
from daemon.emulator import EmulatorOptions, EmulatorServer, Fault
from daemon.emulator.answers import NOT_FOUND_MESSAGE
from daemon.jobs import JobState
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer
from daemon.service import Daemon

S = JobState
TOKEN = "issue7-token-1234"
PEAKS = 20_000

# sep_type 121's ten fields: keys, one label (resolved to its key) and the free text field
EXTENDED = {
    "add_opt1": "Best quality",
    "add_opt2": "1",
    "add_opt3": "1",
    "add_opt4": "8",
    "add_opt5": "485",
    "add_opt6": "1",
    "add_opt7": "0.8",
    "add_opt8": "1",
    "add_opt9": "german",
    "add_opt10": "a note for the tenth field",
}
SENT = {**EXTENDED, "add_opt1": "5"}


def config_file(tmp: Path, base_url: str) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    config = {
        "mvsep": {"base_url": base_url, "api_token": TOKEN},
        "journal": {"path": str(tmp / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(tmp / "state" / "algorithms.json")},
        "engine": {"poll_unknown_s": 0.3, "poll_max_s": 0.5},
        "presets": {"extended": {"sep_type": 121, "output_format": "wav16", **EXTENDED}},
        "inbox": [
            {
                "path": str(tmp / "in"),
                "preset": "extended",
                "output": str(tmp / "out"),
                "settle_s": 0.3,
                "after_success": "keep",
            }
        ],
    }
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def test_all_ten_options_are_sent_and_peaks_do_not_disturb_filing(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.3, peaks_len=PEAKS)
    settings, _ = load_settings(config_file(tmp_path, emu.base_url), env={})
    daemon = Daemon(settings, config_label="issue7")
    daemon.start()
    try:
        os.replace(audio_file("staging/song.wav", seconds=1.0), tmp_path / "in" / "song.wav")
        journal = daemon.journal
        assert journal is not None

        def filed() -> bool:
            jobs = journal.recent_jobs(5)
            return bool(jobs) and jobs[0].state.is_terminal

        wait_until(filed, "the job to end")
        job = journal.recent_jobs(5)[0]
    finally:
        daemon.stop()

    assert job.state is S.FILED, (job.state, job.last_error)
    (view,) = emu.jobs.values()
    assert view.sep_type == 121 and view.options == SENT  # every field, as resolved
    assert job.source.request.options == SENT
    # the done answer did carry the long peaks arrays beside each file
    answer = httpx.get(f"{emu.base_url}/api/separation/get", params={"hash": job.mvsep_hash})
    files = answer.json()["data"]["files"]
    assert files and all(len(f["peaks"]) == PEAKS for f in files)
    assert len(job.outputs) == len(files)
    for out in map(Path, job.outputs):
        info = soundfile.info(out)
        assert info.frames > 0 and abs(info.duration - 1.0) < 0.1, out
    sidecars = list((tmp_path / "out").rglob("*.json"))
    assert sidecars and all("peaks" not in p.read_text(encoding="utf-8") for p in sidecars)


class JumpClock:
    """Shared by the emulator's rate windows and the pacer: ``sleep`` jumps time forward
    at once (one client thread), so a minute of windows passes in milliseconds."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


def test_the_pacer_uses_each_routes_own_limit_without_a_429(
    audio_file: Callable[..., Path],
) -> None:
    clock = JumpClock()
    grants: list[tuple[str, float]] = []
    pacer = Pacer(clock=clock, on_grant=lambda kind, now: grants.append((kind, now)))
    options = EmulatorOptions(processing_s=1e6, tokens=(TOKEN,))  # the job stays processing
    with (
        EmulatorServer(options, clock=clock.monotonic) as emu,
        MvsepClient(base_url=emu.base_url, api_token=TOKEN, gate=pacer, max_attempts=1) as client,
    ):
        job = client.create(sep_type=40, output_format=1, file=audio_file("a.wav", seconds=0.5))
        for _ in range(62):  # account routes: 120 a minute each, learnt from the answers
            client.user()
            client.separation_history(limit=5)
        account_done_at = clock.monotonic()
        for _ in range(60):  # get: 60 a minute
            client.get(job.hash)
        stats = emu.stats
    started = grants[0][1]
    first_minute = [kind for kind, at in grants if at < started + 60.0]
    assert stats["rate_limited"] == 0, stats  # not one 429
    assert stats["calls"]["get"] == 60 and stats["calls"]["user"] == 62
    assert account_done_at == started  # 124 account calls never waited
    assert first_minute.count("user") == first_minute.count("history") == 62
    assert first_minute.count("get") == 58  # the get route kept to its own 60 (less margin)
    assert len(first_minute) > 3 * 60  # far over 60 a minute across routes
    assert pacer.limit_for("user") == pacer.limit_for("history") == 120
    assert pacer.limit_for("get") == 60
    assert clock.monotonic() - started >= 60.0  # the get route waited for its own window


def test_file_or_file_hash_not_found_is_an_expired_result(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(processing_s=0.2)
    unknown = httpx.get(f"{emu.base_url}/api/separation/get", params={"hash": "nope"}).json()
    assert unknown["data"]["message"] == NOT_FOUND_MESSAGE == "File or File Hash not found"
    # Read as "not found"; one such answer is no proof of expiry (issue 9 item 4): the
    # poll is retried, the job filed, never sent again.
    emu.add_fault(Fault(kind="hash_not_found", endpoint="get", times=1))
    with rig(tmp_path, emu, resubmit_expired=True) as r:
        again = r.submit(audio_file("in/again.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        assert r.job(again).state is S.FILED and r.creates() == 1
        assert any("ApiNotFound" in e.reason for e in r.journal.events(again))
    emu.add_fault(Fault(kind="hash_not_found", endpoint="get", times=None))
    with rig(tmp_path / "second", emu, retry_deadline_s=1.0) as r:
        gone = r.submit(audio_file("second/in/gone.wav", seconds=0.5))
        assert r.engine.run_until_idle(60)
        job = r.job(gone)
        assert job.state is S.FAILED and "ApiNotFound" in (job.last_error or "")
        assert r.creates() == 2  # not sent again
