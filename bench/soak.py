"""Soak: the whole daemon against the emulator, with drops, faults and kill -9 storms.

Run by hand (never part of pytest)::

    .venv/bin/python bench/soak.py [--minutes 10] [--seed N] [--keep]

``mvsep-watch run`` runs as a subprocess on a real config file in a temp folder; the
emulator runs in this process (loopback only), faults are armed through its
``/_emulator/faults`` admin endpoint. For ``--minutes`` files are dropped continuously (new
ones, some replaced at the same path, some duplicated, some bad: not audio, or cut off), a
random fault of every kind is armed every few seconds, and the daemon is SIGKILLed and
restarted at random. Then dropping stops and the daemon gets a bounded time to finish.

Every good input is a pure tone of its own frequency: the emulator's stems are linear
filters of the input (a band split), so each stem of an input keeps its frequency and its
length. That is how a stem is checked against the input its sidecar names.

Printed: files, faults, restarts, lost, duplicate creates, misfiled (how each is decided:
bench/README.md); exit 1 unless the last three are 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.emulator import EmulatorOptions, EmulatorServer  # noqa: E402

RATE = 22050
TERMINAL = ("filed", "failed", "cancelled")
FAULT_KNOBS: list[tuple[str, tuple[str, ...]]] = [
    ("http_5xx", ("create", "get", "history", "user", "download")),
    ("http_429", ("create", "get", "history")),
    ("slow", ("create", "get", "history", "download")),
    ("drop_upload", ("create",)),
    ("drop_after_create", ("create",)),
    ("drop_download", ("download",)),
    ("job_failed", ("create",)),
    ("hash_not_found", ("get",)),
    ("done_without_files", ("get",)),
]


@dataclass
class Version:
    """One content dropped at one inbox path."""

    rel: str
    sha256: str
    kind: str  # good | dup | replace | not_audio | cut_off
    freq: float | None = None
    frames: int | None = None


@dataclass
class Soak:
    root: Path
    rng: random.Random
    emulator: EmulatorServer
    versions: list[Version] = field(default_factory=list)
    at_path: dict[str, Version] = field(default_factory=dict)
    tones: dict[str, tuple[float, int]] = field(default_factory=dict)  # sha -> freq, frames
    faults: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    proc: subprocess.Popen[bytes] | None = None
    serial: int = 0

    @property
    def inbox(self) -> Path:
        return self.root / "in"

    # ------------------------------------------------------------------ inputs

    def _tone(self) -> tuple[bytes, float, int]:
        self.serial += 1
        freq = 120.0 + 3.0 * (self.serial % 280)  # 1 s at least: 1 Hz bins, 3 Hz apart
        frames = RATE * self.rng.choice((1, 2)) + self.serial
        t = np.arange(frames) / RATE
        mono = 0.5 * np.sin(2 * np.pi * freq * t)
        path = self.root / "staging" / "tone.wav"
        sf.write(str(path), np.stack([mono, mono], axis=1), RATE, subtype="PCM_16")
        return path.read_bytes(), freq, frames

    def _place(self, rel: str, data: bytes, kind: str, *, old: bool = False) -> Version:
        """Write elsewhere, then move in (as a finished copy lands)."""
        tmp = self.root / "staging" / f"drop-{self.serial}"
        tmp.write_bytes(data)
        if old:  # a copy cut off long ago: the daemon fails it, it does not wait for it
            os.utime(tmp, (time.time() - 7200, time.time() - 7200))
        os.replace(tmp, self.inbox / rel)
        sha = hashlib.sha256(data).hexdigest()
        tone = self.tones.get(sha)
        version = Version(rel, sha, kind, *(tone or (None, None)))
        self.versions.append(version)
        self.at_path[rel] = version
        return version

    def drop_new(self, kind: str = "good") -> None:
        data, freq, frames = self._tone()
        self.tones[hashlib.sha256(data).hexdigest()] = (freq, frames)
        self._place(f"s{self.serial}.wav", data, kind)

    def drop_replace(self) -> None:
        present = [r for r in self.at_path if (self.inbox / r).exists() and r.endswith(".wav")]
        if not present:
            return self.drop_new()
        data, freq, frames = self._tone()
        self.tones[hashlib.sha256(data).hexdigest()] = (freq, frames)
        self._place(self.rng.choice(present), data, "replace")

    def drop_duplicates(self) -> None:
        goods = [v for v in self.versions if v.freq is not None]
        if not goods:
            return self.drop_new()
        source = self.rng.choice(goods)
        data = self._bytes_of(source.sha256)
        for _ in range(self.rng.choice((1, 2))):  # sometimes two identical ones at once
            self.serial += 1
            self._place(f"d{self.serial}.wav", data, "dup")

    def _bytes_of(self, sha: str) -> bytes:
        freq, frames = self.tones[sha]
        t = np.arange(frames) / RATE
        mono = 0.5 * np.sin(2 * np.pi * freq * t)
        path = self.root / "staging" / "again.wav"
        sf.write(str(path), np.stack([mono, mono], axis=1), RATE, subtype="PCM_16")
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        return data

    def drop_bad(self) -> None:
        self.serial += 1
        if self.rng.random() < 0.5:
            self._place(f"bad{self.serial}.wav", self.rng.randbytes(30_000), "not_audio")
            return
        data, _, _ = self._tone()
        self._place(f"cut{self.serial}.wav", data[: len(data) * 2 // 5], "cut_off", old=True)

    # ------------------------------------------------------------ faults, kills

    def arm_fault(self) -> None:
        kind, endpoints = self.rng.choice(FAULT_KNOBS)
        fault: dict[str, Any] = {
            "kind": kind,
            "endpoint": self.rng.choice(endpoints),
            "times": self.rng.choice((1, 1, 2)),
            "skip": self.rng.choice((0, 0, 1, 3)),
        }
        if kind == "http_5xx":
            fault["status"] = self.rng.choice((500, 502, 503))
        elif kind == "http_429":
            fault["retry_after_s"] = self.rng.choice((1.0, 2.0))
        elif kind in ("slow", "done_without_files"):
            fault["delay_s"] = self.rng.uniform(0.5, 3.0)
        request = urllib.request.Request(
            self.emulator.base_url + "/_emulator/faults",
            data=json.dumps([fault]).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["armed"] == 1
        self.faults[kind] += 1

    def start_daemon(self) -> None:
        log = open(self.root / "daemon.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(self.root / "config.toml"), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        log.close()

    def kill_daemon(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.restarts += 1

    def stop_daemon(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return -9


def write_config(root: Path, base_url: str) -> None:
    config = {
        "mvsep": {"base_url": base_url, "api_token": "soak-token"},
        "journal": {"path": str(root / "state" / "journal.sqlite")},
        "catalogue": {"cache_path": str(root / "state" / "algorithms.json")},
        "watch": {"rescan_interval_s": 15.0},
        "engine": {
            "poll_unknown_s": 0.5,
            "poll_max_s": 1.5,
            "retry_base_s": 1.0,
            "retry_cap_s": 8.0,
            "reconcile_grace_s": 10.0,
            "cut_off_wait_s": 10.0,
        },
        "presets": {"vocals": {"sep_type": 40, "output_format": "wav16"}},
        "inbox": [
            {
                "path": str(root / "in"),
                "preset": "vocals",
                "output": str(root / "out"),
                "settle_s": 0.5,
                "after_success": "archive",
            }
        ],
    }
    (root / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")


# ---------------------------------------------------------------------- verdicts


def journal_jobs(root: Path) -> list[dict[str, Any]]:
    path = root / "state" / "journal.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT source_path, sha256, state, mvsep_hash, last_error FROM jobs"
        ).fetchall()
    return [dict(r) for r in rows]


def sidecars(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "out").rglob("*.mvsep*.json"))]


def failed_inputs(root: Path) -> set[tuple[str, str]]:
    """(original name, sha256) of each input in ``_failed`` that has its ``.error.txt``."""
    out: set[tuple[str, str]] = set()
    for path in (root / "in" / "_failed").rglob("*"):
        if not path.is_file() or path.name.endswith(".error.txt"):
            continue
        notes = [p for p in path.parent.iterdir() if p.name.startswith(path.stem)]
        if any(p.name.endswith(".error.txt") and p.stat().st_size > 0 for p in notes):
            out.add((path.name, hashlib.sha256(path.read_bytes()).hexdigest()))
    return out


def sent_inputs(emulator: EmulatorServer, *, failed_only: bool = False) -> Counter[tuple[str, str]]:
    """Creates per (upload name, content), from the inputs the emulator keeps
    (``failed_only``: the jobs MVSEP failed on purpose, the job_failed fault)."""
    counts: Counter[tuple[str, str]] = Counter()
    with emulator.state.lock:  # in this process: the jobs' own inputs, read directly
        jobs = [j for j in emulator.state.jobs.values() if j.failure or not failed_only]
    for job in jobs:
        data = job.input_path.read_bytes() if job.input_path.exists() else b""
        sha = hashlib.sha256(data).hexdigest() if data else f"unknown:{job.hash}"
        counts[(job.upload_name, sha)] += 1
    return counts


def per_content(sent: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_, sha), n in sent.items():
        out[sha] += n
    return out


def was_sent(v: Version, sent: Counter[tuple[str, str]]) -> bool:
    """The daemon uploads as "NONCE-NAME": this version left for MVSEP."""
    return any(sha == v.sha256 and name.endswith("-" + v.rel) for name, sha in sent)


def lost_inputs(
    soak: Soak, jobs: list[dict[str, Any]], sent: Counter[tuple[str, str]]
) -> list[Version]:
    inbox = str(soak.inbox)
    cars = sidecars(soak.root)
    filed = {(Path(c["source"]).name, c["sha256"]) for c in cars}
    # a re-drop of a content whose stems are filed is filed from that result, no new sidecar
    filed |= {
        (Path(j["source_path"]).name, j["sha256"])
        for j in jobs
        if j["state"] == "filed" and j["sha256"] in {c["sha256"] for c in cars}
    }
    failed = failed_inputs(soak.root)
    pending = {
        (Path(j["source_path"]).name, j["sha256"]) for j in jobs if j["state"] not in TERMINAL
    }
    # failed with a reason while the user had replaced its file: nothing left to move
    gone_failed = {
        (Path(j["source_path"]).name, j["sha256"])
        for j in jobs
        if j["state"] == "failed" and j["last_error"]
    } - {(v.rel, v.sha256) for v in soak.at_path.values()}
    pending_paths = {j["source_path"] for j in jobs if j["state"] not in TERMINAL}
    lost = []
    for v in soak.versions:
        owed = soak.at_path.get(v.rel) is v or was_sent(v, sent)
        key = (v.rel, v.sha256)
        failed_here = any(name.startswith(Path(v.rel).stem) and sha == v.sha256
                          for name, sha in failed) or key in gone_failed  # fmt: skip
        waiting = key in pending or (soak.at_path.get(v.rel) is v
                                     and os.path.join(inbox, v.rel) in pending_paths)  # fmt: skip
        if owed and key not in filed and not failed_here and not waiting:
            lost.append(v)
    return lost


def duplicate_creates(sent: Counter[str], failed_on_purpose: Counter[str]) -> int:
    """Creates beyond one per content, and one more after each job MVSEP failed."""
    return sum(max(0, n - 1 - failed_on_purpose[sha]) for sha, n in sent.items())


def dominant_hz(path: Path) -> tuple[float, int]:
    audio, rate = sf.read(str(path), always_2d=True)
    mono = audio.mean(axis=1)
    if not np.any(mono):
        return 0.0, len(mono)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono)), len(mono)


def misfiled_stems(soak: Soak) -> list[str]:
    bad: list[str] = []
    named: set[Path] = set()
    for car in sidecars(soak.root):
        tone = soak.tones.get(car["sha256"])
        for out in map(Path, car["outputs"]):
            named.add(out)
            if tone is None or not out.exists():
                bad.append(f"{out.name}: sidecar sha {car['sha256'][:12]} is no tone dropped")
                continue
            hz, frames = dominant_hz(out)
            if abs(hz - tone[0]) > 1.0 or frames != tone[1]:
                bad.append(f"{out.name}: {hz:.1f} Hz/{frames} frames, input {tone[0]} Hz/{tone[1]}")
    for out in (soak.root / "out").rglob("*.wav"):
        if out in named:
            continue
        hz, frames = dominant_hz(out)
        fits = [v for v in soak.versions if v.freq is not None and abs(v.freq - hz) <= 1.0
                and v.frames == frames and out.name.startswith(Path(v.rel).stem)]  # fmt: skip
        if not fits:
            bad.append(f"{out.name}: an unnamed stem ({hz:.1f} Hz) of no input of its name")
    return bad


# --------------------------------------------------------------------- the run


def drop_something(soak: Soak) -> None:
    roll = soak.rng.random()
    if roll < 0.55:
        soak.drop_new()
    elif roll < 0.70:
        soak.drop_replace()
    elif roll < 0.85:
        soak.drop_duplicates()
    else:
        soak.drop_bad()


def storm(soak: Soak, minutes: float) -> None:
    """Drop, arm faults and kill for ``minutes``; every loop is bounded by the deadline."""
    end = time.monotonic() + minutes * 60
    next_fault = time.monotonic() + soak.rng.uniform(2, 6)
    next_kill = time.monotonic() + soak.rng.uniform(20, 50)
    while (now := time.monotonic()) < end:
        drop_something(soak)
        if now >= next_fault:
            soak.arm_fault()
            next_fault = now + soak.rng.uniform(2, 8)
        if now >= next_kill:
            soak.kill_daemon()
            time.sleep(soak.rng.uniform(0.2, 2.0))  # the time a supervisor takes to restart
            soak.start_daemon()
            next_kill = now + soak.rng.uniform(20, 60)
        elif soak.proc is not None and soak.proc.poll() is not None:
            print(f"daemon exited by itself ({soak.proc.returncode}); restarting", flush=True)
            soak.restarts += 1
            soak.start_daemon()
        time.sleep(soak.rng.uniform(0.5, 3.0))  # the pace of drops: a duration by design


def settle(soak: Soak, budget_s: float) -> bool:
    """Let the daemon finish: True once every journaled job is terminal and every owed
    input is accounted for, polled until ``budget_s`` runs out."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        if soak.proc is not None and soak.proc.poll() is not None:
            soak.restarts += 1
            soak.start_daemon()
        jobs = journal_jobs(soak.root)
        if jobs and all(j["state"] in TERMINAL for j in jobs) and not unseen(soak, jobs):
            return True
        time.sleep(2.0)
    return False


def unseen(soak: Soak, jobs: list[dict[str, Any]]) -> list[Path]:
    """Inputs still in the inbox that no finished job of their content accounts for."""
    known = {(j["source_path"], j["sha256"]) for j in jobs}
    return [
        p
        for p in soak.inbox.iterdir()
        if p.is_file() and (str(p), hashlib.sha256(p.read_bytes()).hexdigest()) not in known
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to drop files")
    parser.add_argument("--finish", type=float, default=180.0, help="seconds to let it finish")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    root = Path(tempfile.mkdtemp(prefix="mvsep-soak-"))
    for sub in ("in", "out", "state", "staging"):
        (root / sub).mkdir()
    options = EmulatorOptions(premium=True, processing_s=1.5, processing_jitter_s=1.0,
                              waiting_s=0.5, data_dir=root / "emulator")  # fmt: skip
    with EmulatorServer(options, host="127.0.0.1", port=0) as emulator:
        soak = Soak(root, random.Random(seed), emulator)
        write_config(root, emulator.base_url)
        print(f"soak: seed={seed} folder={root} minutes={args.minutes}", flush=True)
        soak.start_daemon()
        try:
            storm(soak, args.minutes)
            finished = settle(soak, args.finish)
        finally:
            code = soak.stop_daemon()
        return report(soak, finished, code, args.keep)


def listing(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))


def report(soak: Soak, finished: bool, code: int | None, keep: bool) -> int:
    jobs = journal_jobs(soak.root)
    sent = sent_inputs(soak.emulator)
    lost = lost_inputs(soak, jobs, sent)
    failed = per_content(sent_inputs(soak.emulator, failed_only=True))
    dups = duplicate_creates(per_content(sent), failed)
    gave_up = Counter(
        (j["last_error"] or "?").split(":")[0][:50]
        for j in jobs
        if j["state"] == "failed" and j["mvsep_hash"] is not None
    )
    misfiled = misfiled_stems(soak)
    kinds = Counter(v.kind for v in soak.versions)
    states = Counter(j["state"] for j in jobs)
    print(f"files: {len(soak.versions)} ({listing(kinds)})")
    print(f"faults: {sum(soak.faults.values())} ({listing(soak.faults)})")
    print(f"restarts: {soak.restarts} (SIGKILL; last exit code {code})")
    print(f"jobs: {dict(sorted(states.items()))}; creates: {sum(sent.values())} of "
          f"{len(per_content(sent))} contents; finished in time: {finished}")  # fmt: skip
    print(f"failed after a create: {sum(gave_up.values())} ({listing(gave_up)})")
    print(f"lost: {len(lost)}")
    for v in lost[:20]:
        print(f"  lost {v.rel} ({v.kind}, sha {v.sha256[:12]})")
    print(f"duplicate creates: {dups}")
    print(f"misfiled: {len(misfiled)}")
    for line in misfiled[:20]:
        print(f"  misfiled {line}")
    if not keep and not (lost or dups or misfiled):
        subprocess.run(["rm", "-rf", str(soak.root)], check=False)
    else:
        print(f"kept: {soak.root}")
    return 0 if not (lost or dups or misfiled) else 1


if __name__ == "__main__":
    sys.exit(main())
