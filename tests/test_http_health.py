"""`/livez` and `/readyz` (issue 11, "HTTP"): each code in each condition.

The pure checks by table; then a real Daemon (journal, watcher, engine, client) against the
emulator with its server on 127.0.0.1, asked with plain httpx: the loops tick and every
check passes; MVSEP down does not touch /livez; a missing inbox folder warns, all of them
fail; a refused account fails /readyz until it works again; a deleted journal fails it; a
clock moved past the loops' and the rescan's limits (the app's monotonic clock, injected:
nothing sleeps) fails both.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from daemon_harness import wait_until
from http_harness import checks, daemons, get, http_config, jobs, start

from daemon.emulator import EmulatorOptions, EmulatorServer
from daemon.http import StatusApp, StatusServer
from daemon.http import health as h
from daemon.service import Daemon

__all__ = ["daemons"]  # the fixture, imported
LOCAL = {"listen": "127.0.0.1:0"}
TOKEN = "tok-health-aaaa-1111"


@pytest.mark.parametrize(
    ("loops", "code", "statuses"),
    [
        ({"engine": 99.0, "watcher": 99.5}, 200, ["pass", "pass"]),
        ({"engine": 99.0, "watcher": None}, 200, ["pass", "pass"]),  # starting: 40 s ago
        ({"engine": 99.0, "watcher": None}, 503, ["pass", "fail"]),  # never, in 200 s
        ({"engine": -30.0, "watcher": 99.0}, 503, ["fail", "pass"]),  # 130 s without a tick
    ],
)
def test_liveness_by_the_loops_ticks(
    loops: dict[str, float | None], code: int, statuses: list[str]
) -> None:
    started_at = 60.0 if code == 200 else -100.0
    got, body = h.liveness(loops, now=100.0, started_at=started_at, stale_s=120.0)
    assert got == code
    assert [e[0]["status"] for e in body["checks"].values()] == statuses


@pytest.mark.parametrize(
    ("paused", "running", "status"),
    [([], True, "pass"), (["a"], True, "warn"), (["a", "b"], True, "fail"), ([], False, "fail")],
)
def test_watches_check(paused: list[str], running: bool, status: str) -> None:
    assert h.watches_check(["a", "b"], paused, running=running).status == status


@pytest.mark.parametrize(
    ("scans", "paused", "now", "status"),
    [
        ({"a": 10.0, "b": 500.0}, [], 600.0, "pass"),  # 590 s <= 2 x 300
        ({"a": 10.0, "b": 500.0}, [], 700.0, "fail"),  # a: 690 s
        ({"a": 10.0, "b": 500.0}, ["a"], 700.0, "pass"),  # a paused: the watch check says so
        ({"a": None}, [], 100.0, "warn"),  # first scan still running, the start is young
        ({"a": None}, [], 700.0, "fail"),  # and never ended
        ({"a": 5.0}, ["a"], 10.0, "warn"),  # nothing scanned at all
    ],
)
def test_rescan_check(
    scans: dict[str, float | None], paused: list[str], now: float, status: str
) -> None:
    check = h.rescan_check(scans, paused, now, interval_s=300.0, started_at=0.0)
    assert check.status == status, check


def test_document_is_the_worst_check_and_503_only_on_fail() -> None:
    warn = [h.Check("a", "pass"), h.Check("b", "warn", "why")]
    assert h.document(warn, description="x") == (
        200,
        {"status": "warn", "description": "x",
         "checks": {"a": [{"status": "pass"}], "b": [{"status": "warn", "output": "why"}]}},
    )  # fmt: skip
    assert h.document([*warn, h.Check("c", "fail")], description="x")[0] == 503
    assert h.account_check(("token refused", 90.0), 100.0).status == "fail"
    assert h.account_check(None, 100.0).status == "pass"


def ready_and_all_pass(daemon: Daemon) -> bool:
    response = get(daemon, "/readyz")
    return response.status_code == 200 and set(checks(response).values()) == {"pass"}


def test_all_pass_then_mvsep_down_leaves_livez_alone(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    emulator = make_emulator(premium=True)
    daemon = start(http_config(tmp_path, emulator.base_url, LOCAL), daemons)
    live = get(daemon, "/livez")
    assert live.status_code == 200 and live.headers["content-type"] == h.HEALTH_JSON
    assert live.json()["status"] == "pass"
    assert set(live.json()["checks"]) == {"engine:loop", "watcher:loop"}
    wait_until(lambda: ready_and_all_pass(daemon), "every readiness check passing")
    ready = get(daemon, "/readyz")
    assert ready.headers["content-type"] == h.HEALTH_JSON
    assert set(checks(ready)) == {
        "journal:writable", "watches:armed", "rescan:recent", "account:usable"
    }  # fmt: skip

    emulator.stop()  # an MVSEP outage: no reason to restart the daemon
    assert get(daemon, "/livez").status_code == 200
    assert get(daemon, "/readyz").status_code == 200  # nothing refused the account


def test_missing_inbox_folders_warn_then_fail(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    emulator = make_emulator(premium=True)
    config = http_config(tmp_path, emulator.base_url, LOCAL)
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    second = {"path": str(tmp_path / "in2"), "preset": "vocals", "output": str(tmp_path / "out2")}
    data["inbox"].append(second)
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    (tmp_path / "in2").mkdir()
    daemon = start(config, daemons)
    wait_until(lambda: ready_and_all_pass(daemon), "every readiness check passing")

    shutil.rmtree(tmp_path / "in2")  # an unmounted share
    wait_until(lambda: checks(get(daemon, "/readyz"))["watches:armed"] == "warn", "a warning")
    ready = get(daemon, "/readyz")
    assert ready.status_code == 200
    assert "in2" in ready.json()["checks"]["watches:armed"][0]["output"]
    assert get(daemon, "/livez").status_code == 200  # the loops tick on: no restart

    shutil.rmtree(tmp_path / "in")
    wait_until(lambda: get(daemon, "/readyz").status_code == 503, "readiness failing")
    assert checks(get(daemon, "/readyz"))["watches:armed"] == "fail"
    assert get(daemon, "/livez").status_code == 200


def test_a_refused_account_fails_readiness_until_it_works_again(
    tmp_path: Path, audio_file: Callable[..., Path], daemons: list[Daemon]
) -> None:
    options = EmulatorOptions(premium=True, processing_s=0.2, rate_limit=False, tokens=(TOKEN,))
    with EmulatorServer(options, host="127.0.0.1", port=0) as emulator:
        engine = {"retry_base_s": 0.2, "retry_cap_s": 1.0}
        config = http_config(
            tmp_path, emulator.base_url, LOCAL, mvsep={"api_token": TOKEN}, engine=engine
        )
        daemon = start(config, daemons)
        wait_until(lambda: ready_and_all_pass(daemon), "every readiness check passing")
        emulator.state.options = dataclasses.replace(options, tokens=("someone-else",))
        audio_file("in/song.wav", seconds=1.0)  # its create is refused: submits pause

        wait_until(lambda: get(daemon, "/readyz").status_code == 503, "readiness failing")
        ready = get(daemon, "/readyz")
        account = ready.json()["checks"]["account:usable"][0]
        assert account["status"] == "fail" and "submits paused" in account["output"]
        assert TOKEN not in ready.text
        assert get(daemon, "/livez").status_code == 200

        emulator.state.options = options  # the account works again
        wait_until(lambda: ready_and_all_pass(daemon), "readiness passing again")
        wait_until(lambda: [j.state.value for j in jobs(daemon.settings.journal.path)]
                   == ["filed"], "the song filed")  # fmt: skip


def test_a_deleted_journal_fails_readiness(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    emulator = make_emulator(premium=True)
    daemon = start(http_config(tmp_path, emulator.base_url, LOCAL), daemons)
    wait_until(lambda: ready_and_all_pass(daemon), "every readiness check passing")
    daemon.settings.journal.path.unlink()
    ready = get(daemon, "/readyz")
    assert ready.status_code == 503
    journal = ready.json()["checks"]["journal:writable"][0]
    assert journal["status"] == "fail" and "JournalGone" in journal["output"]


def test_stale_loops_and_an_old_rescan_fail_both(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    emulator = make_emulator(premium=True)
    daemon = start(http_config(tmp_path, emulator.base_url, LOCAL), daemons)
    wait_until(lambda: ready_and_all_pass(daemon), "every readiness check passing")
    later = {"s": 0.0}  # the app's monotonic clock, moved on by hand
    app = StatusApp(daemon, clock=lambda: time.monotonic() + later["s"])
    server = StatusServer(app, "127.0.0.1", 0)
    server.start()
    try:
        assert httpx.get(server.url + "/livez").status_code == 200
        later["s"] = 1000.0  # > 120 s without a tick; > 2 x 300 s since the last rescan
        live = httpx.get(server.url + "/livez")
        assert live.status_code == 503
        assert set(checks(live).values()) == {"fail"}
        assert "hung" in live.json()["checks"]["engine:loop"][0]["output"]
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert checks(ready)["rescan:recent"] == "fail"
        assert checks(ready)["journal:writable"] == "pass"
    finally:
        server.stop()
