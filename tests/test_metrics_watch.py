"""Rescans that found a file no event reported: counted by the watcher, journaled in its
inbox note (as the service does), and read back by /metrics.

A real InboxWatcher on a real folder, whose observer is deaf (accepts the watch, never
delivers an event: the one way to lose events on purpose here), a real journal.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from daemon_harness import wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_watcher import POLL_S, DeafObserver, Recorder, write

from daemon.journal import INBOX_NOTE, Journal
from daemon.metrics import render
from daemon.service import note_inbox
from daemon.watcher import InboxWatcher, WatchedInbox


def missed_in_note(journal: Journal) -> int:
    note = journal.notes_with(INBOX_NOTE).get("nas")
    return 0 if note is None else int(json.loads(note[0]).get("missed", 0))


def test_each_rescan_that_found_an_unreported_file_is_counted(tmp_path: Path) -> None:
    inbox = tmp_path / "nas"
    inbox.mkdir()
    spec = WatchedInbox(name="nas", path=inbox, poll=False, poll_interval_s=POLL_S, settle_s=0.3)
    recorder = Recorder()
    with Journal(tmp_path / "journal.sqlite") as journal:
        watcher = InboxWatcher(
            inboxes=[spec],
            on_ready=recorder.on_ready,
            on_removed=recorder.on_removed,
            rescan_interval_s=0.5,
            observer_factory=DeafObserver,
            on_health=functools.partial(note_inbox, journal),
        )
        watcher.start()
        try:
            wait_until(lambda: "nas" in journal.notes_with(INBOX_NOTE), "the first note")
            for count, name in enumerate(("a.wav", "b.wav"), start=1):
                write(inbox / name)
                assert recorder.ready().relative_path == name  # found by a rescan only
                wait_until(lambda c=count: missed_in_note(journal) == c, f"{count} missed")
        finally:
            watcher.stop()
        body, _ = render(journal)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for s in family.samples
    }
    assert found[("mvsep_watch_rescans_missed_files_total", (("inbox", "nas"),))] == 2
    assert found[("mvsep_watch_inbox_mode", (("inbox", "nas"), ("mode", "native")))] == 1
