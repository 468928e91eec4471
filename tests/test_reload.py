"""The reload plan (daemon/reload.py): pure, from two Settings, no I/O."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from daemon.config import Settings
from daemon.reload import InboxChange, ReloadPlan, plan_reload

BASE: dict[str, Any] = {
    "mvsep": {"base_url": "http://127.0.0.1:9", "api_token": "tok-1"},
    "journal": {"path": "/state/journal.sqlite"},
    "catalogue": {"cache_path": "/state/algorithms.json"},
    "presets": {
        "vocals": {"sep_type": 40, "output_format": "wav16"},
        "bass": {"sep_type": 41},
    },
    "inbox": [
        {"path": "/in/a", "preset": "vocals", "output": "/out/a"},
        {"path": "/in/b", "preset": "bass", "output": "/out/b", "name": "bee"},
    ],
}


def settings(**edits: Any) -> Settings:
    """BASE with ``edits``: a top-level section replaced, or ``inbox_N={key: value}`` merged
    into inbox N (``None`` drops it)."""
    data = copy.deepcopy(BASE)
    inboxes: list[dict[str, Any] | None] = list(data.pop("inbox"))
    for key, value in edits.items():
        if key.startswith("inbox_"):
            n = int(key.removeprefix("inbox_"))
            inboxes[n] = None if value is None else {**(inboxes[n] or {}), **value}
        else:
            data[key] = value
    data["inbox"] = [ib for ib in inboxes if ib is not None]
    return Settings(**data)


def test_the_same_config_changes_nothing() -> None:
    plan = plan_reload(settings(), settings())
    assert plan == ReloadPlan()
    assert not plan.applies_anything and plan.summary() == {}


def test_inboxes_added_and_removed_by_name() -> None:
    extra = {"inbox_1": {"name": "sea", "path": "/in/c"}}  # bee goes, sea comes
    plan = plan_reload(settings(), settings(**extra))
    assert plan.inboxes_added == ("sea",) and plan.inboxes_removed == ("bee",)
    assert plan.inboxes_changed == () and plan.applies_anything
    assert plan.summary() == {"inboxes_added": ["sea"], "inboxes_removed": ["bee"]}
    gone = plan_reload(settings(), settings(inbox_0=None))
    assert gone.inboxes_removed == ("a",) and gone.inboxes_added == ()


@pytest.mark.parametrize(
    ("edit", "keys", "rewatch"),
    [
        ({"preset": "vocals"}, ("preset",), False),
        ({"after_success": "keep"}, ("after_success",), False),
        ({"output_template": "{stem}.{ext}"}, ("output_template",), False),
        ({"settle_s": 1.0}, ("settle_s",), True),
        ({"poll": True}, ("poll",), True),
        ({"poll_interval_s": 3.0}, ("poll_interval_s",), True),
        ({"extensions": ["wav"]}, ("extensions",), True),
        ({"output": "/out/elsewhere"}, ("output",), True),  # an excluded folder of the watch
        ({"path": "/in/moved"}, ("path",), True),  # "bee" is named: the same inbox, moved
        ({"preset": "vocals", "recursive": False}, ("preset", "recursive"), True),
    ],
)
def test_an_inbox_changed_in_place(
    edit: dict[str, Any], keys: tuple[str, ...], rewatch: bool
) -> None:
    plan = plan_reload(settings(), settings(inbox_1=edit))
    assert plan.inboxes_changed == (InboxChange("bee", keys),)
    assert plan.inboxes_changed[0].rewatch is rewatch
    assert plan.rewatched == (("bee",) if rewatch else ())
    assert plan.inboxes_added == plan.inboxes_removed == () and plan.needs_restart == ()


def test_presets_added_removed_changed_and_what_to_resolve() -> None:
    presets = {
        "vocals": {"sep_type": 40, "output_format": "flac16"},  # changed
        "drums": {"sep_type": 44},  # added; bass removed (no inbox uses it any more)
    }
    plan = plan_reload(settings(), settings(presets=presets, inbox_1={"preset": "drums"}))
    assert plan.presets_added == ("drums",)
    assert plan.presets_removed == ("bass",)
    assert plan.presets_changed == ("vocals",)
    assert plan.presets_to_resolve == ("drums", "vocals")


@pytest.mark.parametrize(
    ("section", "value", "named"),
    [
        ("journal", {"path": "/elsewhere/journal.sqlite"}, ("journal.path",)),
        ("mvsep", {**BASE["mvsep"], "base_url": "http://127.0.0.1:10"}, ("mvsep.base_url",)),
        (
            "mvsep",
            {**BASE["mvsep"], "read_timeout_s": 5, "max_parallel_jobs": 2},
            ("mvsep.max_parallel_jobs", "mvsep.read_timeout_s"),
        ),
        ("engine", {"max_transfers": 1}, ("engine.max_transfers",)),
        ("watch", {"rescan_interval_s": 10}, ("watch.rescan_interval_s",)),
        ("logging", {"level": "debug"}, ("logging.level",)),
        ("catalogue", {"cache_path": "/other.json"}, ("catalogue.cache_path",)),
    ],
)
def test_keys_that_need_a_restart_are_named(
    section: str, value: dict[str, Any], named: tuple[str, ...]
) -> None:
    plan = plan_reload(settings(), settings(**{section: value}))
    assert plan.needs_restart == named
    assert not plan.applies_anything


def test_the_token_is_reloaded_not_a_restart_key(tmp_path: Path) -> None:
    new = settings(mvsep={**BASE["mvsep"], "api_token_file": str(tmp_path / "token")})
    new = new.model_copy(
        update={"mvsep": new.mvsep.model_copy(update={"api_token": SecretStr("tok-2")})}
    )
    plan = plan_reload(settings(), new)
    assert plan.token_changed and plan.needs_restart == ()
    assert "tok-" not in repr(plan)  # the plan never holds the token itself
