"""How long one /metrics scrape takes on a big journal (and that it does not grow per job).

Builds a journal of ``--jobs`` jobs (default 100,000) in three inboxes with the events a
real run leaves (seen, prepared, submit_intent, submitted, status, result_ready,
outputs_planned, filed; a tenth failed with the engine's reasons), written straight into
the tables in bulk (the journal's verbs fsync each change: an hour for 100k), then times
``daemon.metrics.render`` on it. Prints the journal's size, the build time and the scrape
times (first and median of ``--scrapes``).

    .venv/bin/python bench/bench_metrics.py [--jobs 100000] [--scrapes 5]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from daemon.journal import Journal
from daemon.metrics import render

REASONS = (
    "not an audio file: a text file named .wav",
    "MVSEP failed the separation: no reason given",
    "still failing after 9 attempts: ApiTimeout: read timed out",
    "the stems could not be filed under their names: [Errno 36] File name too long",
)
FILED_KINDS = (
    ("seen", None, "ready"),
    ("prepared", "ready", "ready"),
    ("submit_intent", "ready", "submitting"),
    ("submitted", "submitting", "queued"),
    ("status", "queued", "queued"),
    ("result_ready", "queued", "downloading"),
    ("outputs_planned", "downloading", "downloading"),
    ("filed", "downloading", "filed"),
)


def build(path: Path, jobs: int) -> None:
    Journal(path).close()  # the schema
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    job_rows, event_rows = [], []
    start = time.time() - jobs * 10.0
    for i in range(1, jobs + 1):
        at = start + i * 10.0
        failed = i % 10 == 0
        state = "failed" if failed else "filed"
        job_rows.append((
            i, f"/in/inbox{i % 3}/song {i}.wav", 1000, 1.0, f"sha{i}", f"inbox{i % 3}", "v",
            "k", "{}", state, f"hash{i}", at + 2, 3.0, 2.5, at, at + 90,
        ))  # fmt: skip
        kinds = FILED_KINDS[:2] + (("failed", "ready", "failed"),) if failed else FILED_KINDS
        for step, (kind, before, after) in enumerate(kinds):
            reason = REASONS[i % len(REASONS)] if kind == "failed" else ""
            event_rows.append((i, at + step * 10.0, kind, before, after, reason))
    db.executemany(
        "INSERT INTO jobs (id, source_path, size, mtime, sha256, inbox, preset, request_key,"
        " source_json, state, mvsep_hash, intent_at, estimated_credits, used_credits,"
        " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        job_rows,
    )
    db.executemany(
        "INSERT INTO events (job_id, at, kind, from_state, to_state, reason) VALUES (?,?,?,?,?,?)",
        event_rows,
    )
    db.commit()
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.sqlite"
        began = time.perf_counter()
        build(path, args.jobs)
        built_s = time.perf_counter() - began
        size_mb = path.stat().st_size / 1e6
        times = []
        with Journal(path) as journal:
            for _ in range(args.scrapes):
                began = time.perf_counter()
                body, _ = render(journal)
                times.append(time.perf_counter() - began)
    print(f"journal: {args.jobs:,} jobs, {size_mb:.1f} MB, built in {built_s:.1f} s")
    print(f"scrape: first {times[0]:.3f} s, median {statistics.median(times):.3f} s, "
          f"{len(body):,} bytes")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
