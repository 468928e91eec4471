"""A new journal appears whole: a reader (``status``, a test watching a starting daemon)
never finds the file without its tables ("no such table: jobs" was seen by tests reading
the journal of a daemon that had just started)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from daemon.errors import JournalError
from daemon.journal import SCHEMA_VERSION, Journal

ROUNDS = 40


def test_a_reader_never_sees_a_journal_without_its_tables(tmp_path: Path) -> None:
    paths = [tmp_path / f"j{i}" / "journal.sqlite" for i in range(ROUNDS)]
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for path in paths:
                if not path.exists():
                    continue
                try:
                    with Journal(path, read_only=True) as journal:
                        journal.recent_jobs(1)
                except (sqlite3.Error, JournalError) as exc:
                    seen.append(f"{path.parent.name}: {exc}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for path in paths:
            Journal(path).close()
    finally:
        done.set()
        reader.join()
    assert seen == []


def test_a_new_journal_is_complete_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    stale = tmp_path / ".journal.sqlite.new-999999"  # another run's, cut off: left alone
    stale.write_bytes(b"")
    with Journal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if ".new-" in n] == [stale.name]
    assert "journal.sqlite" in names
