"""NAS shares: polling chosen per inbox from the filesystem, events found missing, and a
watch that dies with its share. Parsing on sample text; the rest with real observers on
real folders (a mountinfo file written here stands in for a share this machine lacks)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_watcher import DEADLINE_S, POLL_S, DeafObserver, MakeWatcher, make_watcher, write
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from daemon.watcher import health
from daemon.watcher.mounts import (
    MOUNTINFO,
    Mount,
    choose,
    filesystem_of,
    parse_mountinfo,
    watch_mode,
)

__all__ = ["make_watcher"]

SAMPLE = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
40 27 0:45 / /mnt/nas rw,relatime shared:7 master:3 - cifs //nas/music rw,vers=3.1.1
41 27 0:46 / /mnt/nas2 rw,relatime - nfs4 nas:/export rw
42 27 0:47 / /home/me/My\040Drive rw,nosuid - fuse.rclone gdrive: rw
43 27 0:48 /sub /srv/bind rw - xfs /dev/sdb1 rw
44 40 0:49 / /mnt/nas/local rw - tmpfs tmpfs rw
45 27 0:50 / /media/usb rw - fuseblk /dev/sdc1 rw
46 27 0:51 / /mnt/odd rw - weirdfs none rw
this line is not a mount
"""


def test_parse_mountinfo_fields_escapes_and_optional_fields() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert len(mounts) == 9
    assert mounts[2] == Mount("/mnt/nas", "cifs", "//nas/music")
    assert mounts[4] == Mount("/home/me/My Drive", "fuse.rclone", "gdrive:")
    assert mounts[5].mount_point == "/srv/bind" and mounts[5].fstype == "xfs"


@pytest.mark.parametrize(
    ("path", "fstype", "poll"),
    [
        ("/mnt/nas/Inbox", "cifs", True),
        ("/mnt/nas", "cifs", True),
        ("/mnt/nas2/in", "nfs4", True),  # not /mnt/nas: whole components only
        ("/mnt/nas/local/in", "tmpfs", False),  # a local mount below the share
        ("/home/me/My Drive/in", "fuse.rclone", True),
        ("/srv/bind/x", "xfs", False),
        ("/media/usb/in", "fuseblk", False),
        ("/mnt/odd/in", "weirdfs", True),  # unknown type: poll
        ("/home/me/in", "ext4", False),
    ],
)
def test_choose_by_filesystem(path: str, fstype: str, poll: bool) -> None:
    mount = filesystem_of(path, parse_mountinfo(SAMPLE))
    assert mount is not None and mount.fstype == fstype
    chosen, why = choose(mount)
    assert chosen is poll
    assert fstype in why


def test_no_mount_found_polls_and_no_mountinfo_keeps_native(tmp_path: Path) -> None:
    assert choose(None)[0] is True
    poll, why = watch_mode(tmp_path, mountinfo=tmp_path / "no-such-mountinfo")
    assert poll is False and "poll = true" in why


def fake_mountinfo(tmp_path: Path, fstype: str) -> Path:
    path = tmp_path / "mountinfo"
    share = os.path.realpath(tmp_path)
    path.write_text(
        f"27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:45 / {share} rw - {fstype} x rw\n"
    )
    return path


def modes(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["mode"], e["reason"]) for e in logs if e["event"] == "inbox watch mode"]


def test_auto_polls_an_inbox_on_a_share_and_says_why(
    make_watcher: MakeWatcher, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        harness = make_watcher("auto", poll="auto", mountinfo=fake_mountinfo(tmp_path, "smb3"))
        write(harness.inbox / "song.wav")
        assert harness.recorder.ready().relative_path == "song.wav"
    assert harness.watcher.watch_modes() == {"inbox": "polling"}
    [(mode, why)] = modes(logs)
    assert mode == "polling" and "smb3" in why


def test_auto_uses_native_events_on_this_machines_disk(make_watcher: MakeWatcher) -> None:
    with capture_logs() as logs:
        harness = make_watcher("auto", poll="auto")
    expected_poll, expected_why = watch_mode(harness.inbox, mountinfo=MOUNTINFO)
    assert modes(logs) == [("polling" if expected_poll else "native events", expected_why)]
    assert harness.watcher.watch_modes()["inbox"] == ("polling" if expected_poll else "native")


def wait_for_scans(logs: list[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while sum(e["event"] == "inbox scanned" for e in logs) < count:
        assert time.monotonic() < deadline, "the watcher did not scan"
        time.sleep(0.02)  # polling a condition (the log) with a deadline


def test_a_rescan_finding_an_unreported_file_switches_to_polling(
    make_watcher: MakeWatcher,
) -> None:
    with capture_logs() as logs:
        harness = make_watcher(
            "auto", poll="auto", rescan_interval_s=1.0, observer_factory=DeafObserver
        )
        assert harness.watcher.watch_modes() == {"inbox": "native"}
        wait_for_scans(logs, 1)  # files there before the first scan are no evidence
        write(harness.inbox / "unheard.wav")
        assert harness.recorder.ready().relative_path == "unheard.wav"  # by the rescan
        switched = [e for e in logs if "switching it to polling" in e["event"]]
        deadline = time.monotonic() + DEADLINE_S
        while not switched:  # the switch follows the grace period
            assert time.monotonic() < deadline, "no switch to polling"
            harness.recorder.quiet_for(0.2)
            switched = [e for e in logs if "switching it to polling" in e["event"]]
    assert switched[0]["file"] == "unheard.wav" and switched[0]["log_level"] == "warning"
    assert harness.watcher.watch_modes() == {"inbox": "polling"}
    assert modes(logs)[-1][0] == "polling" and "no file event reported" in modes(logs)[-1][1]


def test_poll_false_only_warns_once_about_missing_events(make_watcher: MakeWatcher) -> None:
    with capture_logs() as logs:
        harness = make_watcher("native", rescan_interval_s=0.5, observer_factory=DeafObserver)
        wait_for_scans(logs, 1)
        for name in ("a.wav", "b.wav"):
            write(harness.inbox / name)
            harness.recorder.ready()
        harness.recorder.quiet_for(health.MISSED_EVENT_GRACE_S + 1.0)
    warned = [e for e in logs if "set poll = true" in e["event"]]
    assert len(warned) == 1
    assert harness.watcher.watch_modes() == {"inbox": "native"}


def test_working_events_never_switch_to_polling(make_watcher: MakeWatcher) -> None:
    stop = threading.Event()
    with capture_logs() as logs:
        harness = make_watcher(
            "auto", poll="auto", rescan_interval_s=0.2, observer_factory=Observer
        )

        def busy_writer() -> None:  # new files and growing files all the time
            n = 0
            while not stop.is_set():
                n += 1
                with open(harness.inbox / f"take{n % 7}.wav", "ab") as out:
                    out.write(b"x" * 1000)
                stop.wait(0.01)

        thread = threading.Thread(target=busy_writer)
        thread.start()
        try:
            stop.wait(health.MISSED_EVENT_GRACE_S * 2.5)
        finally:
            stop.set()
            thread.join()
    assert not [e for e in logs if "switching" in e["event"]]
    assert harness.watcher.watch_modes() == {"inbox": "native"}


class FlakyShare:
    """``os.stat`` for a polling observer, failing like a vanished share on demand: its
    folder reads as missing for ``failures`` polls (while the checker's own look at it,
    a moment later, finds it there again)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.failures = 0

    def stat(self, path: str) -> os.stat_result:
        if self.failures and os.fspath(path) == self.root:
            self.failures -= 1
            raise FileNotFoundError(2, "No such file or directory (share gone)", path)
        return os.stat(path)


def test_a_dead_polling_emitter_is_restarted_and_the_inbox_paused_meanwhile(
    make_watcher: MakeWatcher, tmp_path: Path
) -> None:
    share = FlakyShare(tmp_path / "inbox")

    def polling(interval_s: float) -> BaseObserver:
        return PollingObserverVFS(share.stat, os.scandir, polling_interval=interval_s)

    with capture_logs() as logs:
        harness = make_watcher("polling", name="inbox", polling_factory=polling)
        write(harness.inbox / "a.wav")
        assert harness.recorder.ready().relative_path == "a.wav"
        share.failures = 1  # the next poll reads "missing": watchdog's emitter stops for good
        stopped = [e for e in logs if e["event"].startswith("file watching stopped")]
        paused_seen = False
        deadline = time.monotonic() + DEADLINE_S
        while not [e for e in logs if e["event"].startswith("file watching restarted")]:
            assert time.monotonic() < deadline, "the watch was not restarted"
            paused_seen = paused_seen or harness.watcher.paused() == ["inbox"]
            harness.recorder.quiet_for(POLL_S / 2)
        stopped = [e for e in logs if e["event"].startswith("file watching stopped")]
        write(harness.inbox / "b.wav")  # after the restart: its rescan or its events
        assert harness.recorder.ready().relative_path == "b.wav"
        write(harness.inbox / "c.wav")  # only a running emitter can report this one
        assert harness.recorder.ready().relative_path == "c.wav"
    assert len(stopped) == 1 and stopped[0]["log_level"] == "warning"
    assert stopped[0]["retry_in_s"] == health.RESTART_BACKOFF_S[0]
    assert paused_seen
    assert harness.watcher.paused() == []


def test_restart_backoff_doubles_to_its_cap() -> None:
    delays = [0.0]
    for _ in range(10):
        delays.append(health.next_delay(delays[-1]))
    first, cap = health.RESTART_BACKOFF_S
    assert delays[1:4] == [first, first * 2, first * 4]
    assert delays[-1] == cap and max(delays) == cap
