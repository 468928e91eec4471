"""The slot count follows the account (defect 3 of issue 8): MVSEP unreachable at start does
not make a premium account a free one for good, and the plan is read again (plans change).

Real parts: the emulator over loopback, the real client, journal and engine (or the whole
daemon); the emulator's account record is changed in place to change the plan.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_harness import wait_until, write_config
from test_engine_rig import rig

from daemon.config import load_settings
from daemon.emulator import Fault
from daemon.engine import EngineSettings
from daemon.engine.slots import Slots
from daemon.mvsep.client import MvsepClient
from daemon.service import Daemon

TOKEN = "harness-token-1"  # the token daemon_harness.write_config puts in the config


def test_daemon_started_while_the_account_cannot_be_read_gets_the_premium_slots_later(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator(premium=True, processing_s=0.2)
    emu.add_fault(Fault(kind="http_5xx", endpoint="user", status=503, times=None))
    config = write_config(tmp_path, emu.base_url, engine={"retry_base_s": 0.2, "retry_cap_s": 1.0})
    settings, _ = load_settings(config)
    daemon = Daemon(settings, config_label=str(config))
    try:
        daemon.start()
        engine = daemon.engine
        assert engine is not None and daemon.journal is not None
        wait_until(lambda: engine.slots is not None, "the engine to start")
        assert engine.slots == 1 and not engine.slots_known  # provisional, not "free for good"
        before = emu.stats["calls"].get("user", 0)
        wait_until(lambda: emu.stats["calls"].get("user", 0) >= before + 2, "asked again")
        assert engine.slots == 1
        assert daemon.journal.events() == []  # the asking is journal-free
        emu.clear_faults()
        wait_until(lambda: engine.slots == 10, "the premium slot count")
        assert engine.slots_known
    finally:
        daemon.stop()


def test_the_account_is_read_again_and_the_slot_count_follows_a_plan_change(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator(premium=True)
    with rig(tmp_path, emu, account_recheck_s=0.3) as r:
        r.engine.start()
        wait_until(lambda: r.engine.slots == 10, "the premium slot count")
        emu.state.accounts["test-token"].premium = False  # the plan ran out
        wait_until(lambda: r.engine.slots == 1, "the free slot count")
        emu.state.accounts["test-token"].premium = True  # renewed
        wait_until(lambda: r.engine.slots == 10, "the premium slot count again")


def _client(emu: Any) -> MvsepClient:
    return MvsepClient(base_url=emu.base_url, api_token="slots-token", max_attempts=1)


def test_slots_back_off_while_the_account_is_unreadable_then_follow_it(
    make_emulator: Callable[..., Any],
) -> None:
    emu = make_emulator(premium=True)
    emu.add_fault(Fault(kind="http_5xx", endpoint="user", times=2))
    settings = EngineSettings(retry_base_s=4.0, retry_cap_s=10.0, account_recheck_s=3600.0)
    with _client(emu) as client:
        slots = Slots(settings, client.user, rng=random.Random(1))
        assert (slots.limit, slots.known, slots.read_due_in(0.0)) == (1, False, 0.0)
        slots.read(0.0)
        first = slots.read_due_in(0.0)
        assert first is not None and 2.0 <= first <= 4.0  # backoff from retry_base_s
        slots.read(first)
        second = slots.read_due_in(first)
        assert second is not None and 4.0 <= second <= 8.0  # doubled
        slots.read(first + second)
        assert (slots.limit, slots.known) == (10, True)
        assert slots.read_due_in(first + second) == 3600.0  # then every account_recheck_s


def test_a_refused_create_teaches_the_limit_until_the_next_account_read(
    make_emulator: Callable[..., Any],
) -> None:
    emu = make_emulator(premium=True)
    with _client(emu) as client:
        slots = Slots(EngineSettings(account_recheck_s=100.0), client.user, rng=random.Random(1))
        slots.read(0.0)
        assert slots.limit == 10
        slots.refused(3, now=5.0)  # refused while three others held a slot
        assert slots.limit == 3
        slots.refused(4, now=5.5)  # a stale count: each refusal is an upper bound, the lowest wins
        assert slots.limit == 3
        slots.refused(0, now=6.0)  # never below one
        assert slots.limit == 1
        slots.read(100.0)  # the account read forgets what was learnt
        assert slots.limit == 10


def test_max_parallel_jobs_is_an_upper_bound_and_a_learnt_limit_expires(
    make_emulator: Callable[..., Any],
) -> None:
    emu = make_emulator(premium=True)
    settings = EngineSettings(max_parallel_jobs=4, account_recheck_s=50.0)
    with _client(emu) as client:
        slots = Slots(settings, client.user, rng=random.Random(1))
        assert (slots.limit, slots.known, slots.read_due_in(0.0)) == (4, True, None)
        slots.refused(7, now=10.0)  # more than the setting: the setting stays the bound
        assert slots.limit == 4
        slots.refused(2, now=10.0)
        assert slots.limit == 2
        assert slots.read_due_in(10.0) == 50.0
        slots.read(60.0)
        assert slots.limit == 4 and slots.read_due_in(60.0) is None
    assert emu.stats["calls"].get("user", 0) == 0  # the setting wins: the account is not read
