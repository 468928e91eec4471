"""The credit guard's pure parts (issue 11, "Credit guard"): the estimate with the chosen
options' ``price_rules`` (the emulator's catalogue and the real capture), the decision and
the ordered plan as tables of cases, and the ``held`` state in the job state machine. No I/O
but reading catalogue files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from daemon.catalogue import Catalogue, builtin_catalogue
from daemon.engine.credit_guard import CREDITS, DAY, CreditLimits, Verdict, decide, plan
from daemon.engine.prepare import estimate_credits
from daemon.errors import IllegalTransition
from daemon.jobs import (
    Cancelled,
    Held,
    Job,
    JobRequest,
    JobState,
    Released,
    SourceFile,
    SubmitIntent,
    cancel_event,
    transition,
)

TODAY = dt.date(2026, 12, 31)


@pytest.mark.parametrize(
    ("duration_s", "coefficient", "multiplier", "expected"),
    [
        (80.0, 1.5, 1.0, 2.0),  # floor(1.33 min × 1.5) = 2
        (80.0, 1.5, 2.0, 4.0),  # the overlap 87.5% option doubles it
        (20.0, 1.0, 1.0, 1.0),  # under a minute: at least 1
        (600.0, 2.0, 1.5, 30.0),
        (None, 1.0, 2.0, None),  # no duration: unknown
    ],
)
def test_the_estimate_is_minutes_times_coefficient_times_the_multipliers(
    duration_s: float | None, coefficient: float, multiplier: float, expected: float | None
) -> None:
    assert estimate_credits(duration_s, coefficient, multiplier) == expected


def _resolve(catalogue: Catalogue, sep_type: int, **options: str) -> float:
    resolved = catalogue.resolve(sep_type=sep_type, options=options, output_format="mp3",
                                 premium=True, where="t")  # fmt: skip
    return resolved.price_multiplier


def test_the_builtin_catalogue_carries_a_price_rule_the_preset_resolves_to() -> None:
    catalogue = builtin_catalogue()
    assert _resolve(catalogue, 40) == 1.0  # the default overlap (50%) has no rule
    assert _resolve(catalogue, 40, add_opt2="87.5%") == 2.0  # by label
    assert _resolve(catalogue, 40, Overlap="8") == 2.0  # by the field's label and the key
    assert _resolve(catalogue, 48) == 1.0  # a type without rules


def test_the_real_capture_price_rules_are_read(captures: Path) -> None:
    raw = json.loads((captures / "algorithms.json").read_text(encoding="utf-8"))
    catalogue = Catalogue(raw)
    assert _resolve(catalogue, 40, add_opt2="8") == 2.0  # sep_type 40, overlap 87.5%: ×2.0
    assert _resolve(catalogue, 48, add_opt2="8") == 1.5
    assert _resolve(catalogue, 48, add_opt2="2") == 1.0
    rules = [{"option_key": "1", "mode": "fixed", "value": "9"}]  # not a multiplier: ignored
    fields = [{"name": "add_opt1", "options": '{"1": "a"}', "price_rules": rules}]
    unknown_mode = {**raw[0], "algorithm_fields": fields}
    assert _resolve(Catalogue([unknown_mode]), int(raw[0]["render_id"]), add_opt1="1") == 1.0


DAY_100 = CreditLimits(max_credits_per_day=100)
KEEP_40 = CreditLimits(keep_credits_at_least=40)
BOTH = CreditLimits(max_credits_per_day=100, keep_credits_at_least=40)


@pytest.mark.parametrize(
    ("estimate", "used", "left", "premium", "limits", "cause"),
    [
        (10.0, 0.0, 500.0, True, CreditLimits(), None),  # no limit set
        (10.0, 95.0, 0.0, False, BOTH, None),  # a free account: the guard is off
        (10.0, 90.0, 500.0, True, DAY_100, None),  # exactly the limit: allowed
        (10.0, 95.0, 500.0, True, DAY_100, DAY),  # would pass the day's limit
        (None, 100.0, 500.0, True, DAY_100, DAY),  # unknown estimate counts as 1
        (None, 99.0, 500.0, True, DAY_100, None),
        (150.0, 0.0, 500.0, True, DAY_100, DAY),  # alone over the limit
        (10.0, 95.0, 500.0, None, DAY_100, DAY),  # account not read yet: the day still counts
        (10.0, 0.0, 50.0, True, KEEP_40, None),  # leaves exactly 40
        (10.0, 0.0, 49.0, True, KEEP_40, CREDITS),  # would leave 39
        (10.0, 0.0, None, True, KEEP_40, CREDITS),  # credits left unknown: held
        (10.0, 0.0, None, None, DAY_100, None),  # unknown credits matter only to keep_…
        (10.0, 95.0, 10.0, True, BOTH, DAY),  # both over: the day's limit is named
        (10.0, 0.0, 10.0, True, BOTH, CREDITS),
    ],
)
def test_the_decision(
    estimate: float | None,
    used: float,
    left: float | None,
    premium: bool | None,
    limits: CreditLimits,
    cause: str | None,
) -> None:
    verdict = decide(estimate=estimate, used_today=used, credits_left=left, premium=premium,
                     limits=limits, today=TODAY)  # fmt: skip
    assert verdict.cause == cause
    assert (verdict.hold is None) == (cause is None)


def test_the_reasons_say_when_the_job_goes_on() -> None:
    day = decide(estimate=10.0, used_today=95.0, credits_left=None, premium=True,
                 limits=DAY_100, today=TODAY)  # fmt: skip
    assert day.hold is not None and "tomorrow (2027-01-01)" in day.hold and "95" in day.hold
    alone = decide(estimate=150.0, used_today=0.0, credits_left=None, premium=True,
                   limits=DAY_100, today=TODAY)  # fmt: skip
    assert alone.hold is not None and "raise the limit" in alone.hold
    keep = decide(estimate=10.0, used_today=0.0, credits_left=45.0, premium=True,
                  limits=KEEP_40, today=TODAY)  # fmt: skip
    assert keep.hold is not None and "credits bought" in keep.hold and "45" in keep.hold


def test_the_plan_counts_each_job_let_through_against_the_next() -> None:
    verdicts = plan([(1, 60.0), (2, 60.0), (3, 30.0), (4, 20.0)], used_today=0.0,
                    credits_left=None, premium=True, limits=DAY_100, today=TODAY)  # fmt: skip
    assert {i: v.cause for i, v in verdicts.items()} == {1: None, 2: DAY, 3: None, 4: DAY}
    kept = plan([(1, 35.0), (2, 35.0)], used_today=0.0, credits_left=100.0, premium=True,
                limits=KEEP_40, today=TODAY)  # fmt: skip
    assert [v.cause for v in kept.values()] == [None, CREDITS]
    assert plan([], used_today=0.0, credits_left=None, premium=True, limits=BOTH,
                today=TODAY) == {}  # fmt: skip


def _job(state: JobState = JobState.READY, sha256: str | None = "ab" * 32) -> Job:
    source = SourceFile(path=Path("/in/a.wav"), inbox="main", relative_path="a.wav",
                        preset="p", request=JobRequest(40, {}, 2, "BS Roformer"),
                        output_dir=Path("/out"), output_template="{name}/{stem}.{ext}",
                        failed_dir=Path("/in/_failed"))  # fmt: skip
    return Job(id=1, source=source, size=1, mtime=1.0, created_at=0.0, updated_at=0.0,
               state=state, sha256=sha256, estimated_credits=3.0)  # fmt: skip


def test_held_is_a_state_of_its_own_nothing_sent_nothing_failed() -> None:
    held = transition(_job(), Held(f"{DAY}: over"), now=5.0)
    assert held.state is JobState.HELD and held.last_error == f"{DAY}: over"
    assert not held.holds_slot and not held.state.is_terminal and held.attempts == 0
    again = transition(held, Held(f"{DAY}: new figures"), now=6.0)
    assert again.state is JobState.HELD and again.last_error == f"{DAY}: new figures"
    with pytest.raises(IllegalTransition):  # never sent while held
        transition(held, SubmitIntent("nonce"), now=6.0)
    released = transition(held, Released("allowed"), now=7.0)
    assert released.state is JobState.READY and released.last_error is None
    assert released.sha256 == held.sha256 and released.estimated_credits == 3.0
    with pytest.raises(IllegalTransition):  # only a prepared job is held
        transition(_job(sha256=None), Held(f"{DAY}: over"), now=5.0)
    with pytest.raises(IllegalTransition):
        transition(_job(), Released("allowed"), now=5.0)


def test_a_held_job_is_cancelled_at_once() -> None:
    held = transition(_job(), Held(f"{CREDITS}: low"), now=5.0)
    event = cancel_event(held, "removed", processing="discard")
    assert isinstance(event, Cancelled)
    assert transition(held, event, now=6.0).state is JobState.CANCELLED


def test_a_verdict_names_its_cause() -> None:
    assert Verdict().cause is None
    assert Verdict(f"{CREDITS}: 3 left").cause == CREDITS
