"""One default and one name per setting, from the config file to the engine (defect 8:
``EngineSettings`` and the config disagreed on max_transfers, the retry base and cap, the
archive folder and after_success, and renamed keys on the way)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from daemon.config import (
    ARCHIVE_DIR_NAME,
    EngineSection,
    InboxSection,
    MvsepSection,
    Settings,
)
from daemon.engine import EngineSettings
from daemon.jobs import SourceFile
from daemon.service import engine_settings

POLL_KEYS = {"poll_unknown_s", "poll_max_s"}  # they configure the poll policy, not the engine


def test_engine_settings_defaults_are_the_config_defaults_under_the_same_names() -> None:
    engine = EngineSettings()
    names = {f.name for f in dataclasses.fields(EngineSettings)}
    config = EngineSection()
    for key in set(EngineSection.model_fields) - POLL_KEYS:
        assert key in names, f"[engine] {key} has another name in EngineSettings"
        assert getattr(engine, key) == getattr(config, key), key
    assert engine.max_parallel_jobs == MvsepSection().max_parallel_jobs


def test_the_documented_values_win() -> None:
    engine = EngineSettings()
    assert (engine.max_transfers, engine.retry_base_s, engine.retry_cap_s) == (3, 5.0, 600.0)


def test_a_default_config_maps_onto_the_default_engine_settings() -> None:
    assert engine_settings(Settings()) == EngineSettings()


def test_source_defaults_are_the_inbox_defaults(tmp_path: Path) -> None:
    inbox = InboxSection(path=tmp_path / "in", preset="p", output=tmp_path / "out")
    fields = {f.name: f.default for f in dataclasses.fields(SourceFile)}
    for key in ("after_success", "on_collision", "sidecar"):
        assert fields[key] == getattr(inbox, key), key
    assert (
        inbox.archive_path == tmp_path / "in" / ARCHIVE_DIR_NAME == tmp_path / "in" / "_processed"
    )


def test_an_old_key_name_says_what_it_is_called_now(tmp_path: Path) -> None:
    from daemon.config import load_settings
    from daemon.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text("[engine]\nbackoff_base_s = 5\n", encoding="utf-8")
    try:
        load_settings(path, env={}, require_token=False)
    except ConfigError as exc:
        assert exc.problems == [
            f"{path}: [engine] backoff_base_s: renamed: write retry_base_s instead"
        ]
    else:
        raise AssertionError("an old key name must be refused")
