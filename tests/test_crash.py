"""Crash safety: SIGKILL `separate` at every kind of moment, many times, then check the books.

`separate` runs as a real subprocess over a batch of files, against the emulator (in this
process) with two crash windows held open: every create is answered a second after its job
exists (``delay_answer``) and every stem download is spread over a second
(``throttle_download``). The test watches the emulator and the subprocess's own output and
kills it with SIGKILL at a rotating set of moments, restarting it each time. At the end:
every input's stems are filed exactly once, MVSEP saw exactly one create per input, no
``.part`` or partial file is left in the output tree, and no input was lost.

20 files, at least 32 kills over all seven moments: about 2 minutes on a 2-core machine
(run with ``-s`` to see the kills per moment).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile

from daemon.emulator import Fault
from daemon.jobs import JobState
from daemon.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
STEMS = ("Vocals", "Instrumental")
# The moments to kill at, in rotation. Each waits for its sign, then kills at once.
MOMENTS = (
    "submit_intent",  # intent journaled, the upload starting or under way
    "create_window",  # the job exists at MVSEP, its answer (the hash) not yet stored
    "submitted",  # hash stored
    "polling",  # a status poll answered
    "downloading",  # a stem half downloaded
    "outputs_planned",  # output paths journaled, stems being filed
    "random",  # anywhere
)


def spawn(tmp: Path, base_url: str, inputs: list[Path]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MVSEP_API_TOKEN": "crash-token-0001",
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "MVSEP_WATCH_ENGINE__RECONCILE_GRACE_S": "2",
        "MVSEP_WATCH_ENGINE__POLL_UNKNOWN_S": "1",
        "MVSEP_WATCH_ENGINE__RETRY_BASE_S": "0.5",
        "MVSEP_WATCH_ENGINE__RETRY_CAP_S": "2",
    }
    cmd = [
        sys.executable, "-m", "daemon", "--log-format", "json", "separate", "--no-config",
        "--base-url", base_url, "--journal", str(tmp / "journal.sqlite"),
        "--sep-type", "40", "--format", "wav16", "--out", str(tmp / "out"),
        *map(str, inputs),
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def reader(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> threading.Thread:
    def run() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def event_of(line: str) -> str:
    """The engine event of a JSON log line (``job submitted`` -> ``submitted``), or a progress."""
    if line.startswith("{"):
        try:
            return str(json.loads(line).get("event", "")).removeprefix("job ")
        except json.JSONDecodeError:
            return ""
    if ": downloading " in line and any(f" {p}0%" in line for p in range(1, 10)):
        return "downloading"
    return ""


EVENT_MOMENTS = {"submit_intent": "submit_intent", "submitted": "submitted",
                 "status": "polling", "outputs_planned": "outputs_planned",
                 "downloading": "downloading"}  # fmt: skip
IMPATIENT_S = 25.0
JOB_EVENTS = {
    "prepared", "submit_intent", "submitted", "status", "result_ready", "outputs_planned",
    "filed", "source_disposed", "reconciled_absent", "downloading",
}  # fmt: skip


def sign_for(moment: str, emulator: Any, rng: random.Random) -> Callable[[str], bool]:
    """A predicate over output lines (also polled with "") that says: kill now.

    A run that has not met its moment after IMPATIENT_S is killed at its next engine event
    instead (counted under that event's moment, or "random"), so that every run ends in a
    kill until the work is done.
    """
    wanted = precise_sign(moment, emulator, rng)
    impatient_at = time.monotonic() + IMPATIENT_S
    fired: list[str] = []

    def sign(line: str) -> bool:
        if wanted(line):
            fired.append(moment)
            return True
        event = event_of(line)
        if event in JOB_EVENTS and time.monotonic() >= impatient_at:
            fired.append(EVENT_MOMENTS.get(event, "random"))
            return True
        return False

    sign.fired = fired  # type: ignore[attr-defined]
    return sign


def precise_sign(moment: str, emulator: Any, rng: random.Random) -> Callable[[str], bool]:
    if moment == "create_window":
        # a cheap look at the emulator's job table (this loop shares the GIL with it)
        known = len(emulator.state.jobs)
        return lambda line: len(emulator.state.jobs) > known
    if moment == "random":
        at = time.monotonic() + rng.uniform(2.0, 12.0)
        return lambda line: time.monotonic() >= at
    wanted = {"polling": "status"}.get(moment, moment)
    return lambda line: event_of(line) == wanted


def next_moment(journal_path: Path, attempt: int, reached: set[str]) -> str:
    """The next moment among those the journal says can still come: one not reached yet
    first (so every moment is covered while it still can be), else in rotation."""
    states: Counter[str] = Counter()
    if journal_path.exists():
        with Journal(journal_path, read_only=True) as journal:
            states = Counter(str(j.state) for j in journal.recent_jobs(10_000))
    if not journal_path.exists() or states["ready"] + states["retry_wait"]:
        possible = MOMENTS
    elif states["submitting"] + states["queued"]:
        possible = MOMENTS[2:]
    else:
        possible = MOMENTS[4:]
    missing = [m for m in possible if m not in reached]
    return missing[0] if missing else possible[attempt % len(possible)]


def run_until(proc: subprocess.Popen[str], kill_now: Callable[[str], bool], limit_s: float) -> bool:
    """Feed output lines to the predicate; SIGKILL when it says so. True if killed."""
    lines: queue.Queue[str] = queue.Queue()
    thread = reader(proc, lines)
    deadline = time.monotonic() + limit_s
    killed = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                line = ""
            if kill_now(line):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(timeout=30)
        thread.join(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
    if not killed and proc.returncode != 0:
        raise AssertionError(f"separate neither finished nor reached its kill point in {limit_s} s")
    return killed


FILES = 20  # room to spare: a run that finishes every file before its moment ends the kills
KILLS_WANTED = 32


@pytest.mark.timeout(1200)
def test_sigkill_at_every_moment_loses_nothing_and_pays_once(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
) -> None:
    files, kills_wanted = FILES, KILLS_WANTED
    # a free account: one job at a time, so every moment keeps coming round
    emulator = make_emulator(premium=False, processing_s=2.5, rate_limit=False)
    emulator.add_fault(Fault(kind="delay_answer", endpoint="create", times=None, delay_s=1.0))
    emulator.add_fault(
        Fault(kind="throttle_download", endpoint="download", times=None, delay_s=1.0)
    )
    inputs = [audio_file(f"in/track {i:02}.wav", seconds=2.0 + i / 1000) for i in range(files)]
    rng = random.Random(20261125)
    kills: Counter[str] = Counter()
    attempts = 0
    started = time.monotonic()
    while sum(kills.values()) < kills_wanted or set(kills) != set(MOMENTS):
        attempts += 1
        assert attempts < kills_wanted * 3, f"too many runs without a kill: {dict(kills)}"
        moment = next_moment(tmp_path / "journal.sqlite", attempts, set(kills))
        proc = spawn(tmp_path, emulator.base_url, inputs)
        sign = sign_for(moment, emulator, rng)
        if run_until(proc, sign, limit_s=120):
            kills[sign.fired[-1]] += 1  # type: ignore[attr-defined]
        elif proc.returncode == 0:
            break  # everything finished before this moment came: nothing left to kill

    final = spawn(tmp_path, emulator.base_url, inputs)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr[-3000:]
    print(
        f"{sum(kills.values())} kills in {attempts} runs, {time.monotonic() - started:.0f} s:",
        dict(kills),
    )

    assert_books_balance(tmp_path, emulator, inputs)
    assert sum(kills.values()) >= kills_wanted, dict(kills)
    assert set(kills) == set(MOMENTS), f"moments never reached: {set(MOMENTS) - set(kills)}"


def assert_books_balance(tmp: Path, emulator: Any, inputs: list[Path]) -> None:
    creates = Counter(job.upload_name.split("-", 1)[1] for job in emulator.jobs.values())
    assert creates == Counter({p.name: 1 for p in inputs}), creates
    out = tmp / "out"
    every_file = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(
        [f"{p.stem}/{p.stem} - {stem}.wav" for p in inputs for stem in STEMS]
        + [f"{p.stem}/{p.stem}.mvsep.json" for p in inputs]
    )
    stems_and_sidecars = [f for f in every_file if not f.endswith(".part")]
    assert not [f for f in every_file if f.endswith(".part")], every_file
    assert [f for f in stems_and_sidecars if f.endswith(".wav")] == [
        f for f in expected if f.endswith(".wav")
    ], every_file
    assert len([f for f in every_file if f.endswith(".json")]) == len(inputs), every_file
    for p in inputs:
        assert p.exists()  # separate never loses (or moves) its inputs
        for stem in STEMS:
            info = soundfile.info(str(out / p.stem / f"{p.stem} - {stem}.wav"))
            assert abs(info.duration - 2.0) < 0.1
    with Journal(tmp / "journal.sqlite", read_only=True) as journal:
        jobs = journal.recent_jobs(10_000)
    filed = Counter(j.source.path.name for j in jobs if j.state == JobState.FILED)
    assert filed == Counter({p.name: 1 for p in inputs}), filed
