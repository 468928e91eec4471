"""The account pause in ``daemon.engine.slots`` on a real client against the emulator: a
refused token pauses, the pause is told once, its re-reads back off, a new token (SIGHUP's
recheck) is read at once, and a working account ends the pause. The whole-daemon version is
``tests/test_account_pause.py`` (subprocesses, which coverage does not see)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from daemon.engine import EngineSettings
from daemon.engine.slots import Slots, account_problem
from daemon.errors import ApiAuthError, ApiRejected, ApiServerError
from daemon.mvsep.client import MvsepClient
from daemon.mvsep.models import UserInfo

GOOD = "good-token-1"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ApiAuthError("HTTP 401"), "MVSEP refused the API token: HTTP 401"),
        (ApiRejected("Account disabled"), "MVSEP refused the account: Account disabled"),
        (ApiRejected("Not enough minutes"), "MVSEP refused the account: Not enough minutes"),
        (ApiRejected("Invalid sep_type: 999"), None),
        (ApiServerError("HTTP 503"), None),
    ],
)  # fmt: skip
def test_which_errors_are_the_accounts(exc: BaseException, expected: str | None) -> None:
    assert account_problem(exc) == expected


def test_a_refused_token_pauses_until_a_read_works(make_emulator: Callable[..., Any]) -> None:
    emu = make_emulator(premium=True, tokens=(GOOD,))
    told: list[str | None] = []
    with (
        MvsepClient(base_url=emu.base_url, api_token="revoked", max_attempts=1) as bad,
        MvsepClient(base_url=emu.base_url, api_token=GOOD, max_attempts=1) as good,
    ):
        reader: list[Callable[[], UserInfo]] = [bad.user]
        settings = EngineSettings(retry_base_s=2.0, retry_cap_s=30.0)
        slots = Slots(settings, lambda: reader[0](), rng=random.Random(3), on_pause=told.append)
        slots.read(0.0)
        assert slots.paused is not None and "API token" in slots.paused
        assert "revoked" not in slots.paused  # never the token itself
        first_due = slots.read_due_in(0.0)
        assert first_due is not None and 0 < first_due <= 30.0
        slots.read(100.0)  # still refused: the pause stays, told once, looked at later again
        assert slots.paused is not None and told == [slots.paused]
        later_due = slots.read_due_in(100.0)
        assert later_due is not None and later_due > 0
        reader[0] = good.user  # a new token (SIGHUP): read at the next pass, not after the wait
        slots.recheck()
        due = slots.read_due_in(100.0)
        assert due is not None and due <= 0
        slots.read(100.0)
        assert slots.paused is None and told[-1] is None
        assert slots.limit == 10 and slots.premium is True


def test_mvsep_unreachable_while_paused_keeps_the_pause(make_emulator: Callable[..., Any]) -> None:
    emu = make_emulator(premium=False, tokens=(GOOD,))
    with MvsepClient(base_url=emu.base_url, api_token="revoked", max_attempts=1) as bad:
        calls: list[int] = []

        def read() -> UserInfo:
            calls.append(1)
            if len(calls) == 1:
                return bad.user()  # refused: pause
            raise ApiServerError("HTTP 503")  # then MVSEP is down: not a reason to go on

        slots = Slots(EngineSettings(), read, rng=random.Random(3))
        slots.read(0.0)
        assert slots.paused is not None
        slots.read(1000.0)
        assert slots.paused is not None and len(calls) == 2


def test_a_pause_that_cannot_be_journaled_still_pauses(make_emulator: Callable[..., Any]) -> None:
    emu = make_emulator(tokens=(GOOD,))

    def banner(_: str | None) -> None:
        raise OSError(28, "No space left on device")

    with MvsepClient(base_url=emu.base_url, api_token="revoked", max_attempts=1) as bad:
        slots = Slots(EngineSettings(), bad.user, rng=random.Random(3), on_pause=banner)
        slots.read(0.0)
        assert slots.paused is not None
