"""PURE: what a config reload (SIGHUP) changes, from the running settings and the new ones.

:func:`plan_reload` compares two validated :class:`~daemon.config.Settings` and returns a
:class:`ReloadPlan`; ``Daemon.reload`` (``service.py``) applies it. No I/O here.

What a reload can change while jobs run:

* inboxes, matched by their name (``display_name``): added ones are watched and scanned;
  removed ones are no longer watched (their journaled jobs finish and are filed, nothing
  new is taken from them, their files are not read as removed); changed ones take their new
  settings for the files found from then on, and their watch is placed again when a key the
  watcher uses changed (:data:`WATCH_KEYS`);
* presets: files found from then on use the new request; journaled jobs keep the request
  they were journaled with;
* the API token (``[mvsep] api_token``, ``api_token_file`` or ``$MVSEP_API_TOKEN``).

Every other key is fixed for the life of the process (the journal, the client and its
pacing, the engine, the watcher's rescan interval, logging, the catalogue cache): a reload
names those that differ (:attr:`ReloadPlan.needs_restart`) and leaves them as they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from daemon.config import InboxSection, Settings

RELOADABLE_SECTIONS = frozenset({"inbox", "presets"})
"""The top-level config sections a reload applies (besides the token keys)."""

TOKEN_KEYS = frozenset({"mvsep.api_token", "mvsep.api_token_file"})
"""Keys a reload applies: the token is read again on every reload."""

WATCH_KEYS = frozenset(
    {
        "path",
        "name",
        "poll",
        "poll_interval_s",
        "settle_s",
        "recursive",
        "follow_symlinks",
        "extensions",
        "output",
        "archive_dir",
        "failed_dir",
    }
)
"""``[[inbox]]`` keys the watcher uses (``service.watched_inbox``): a change places that
inbox's watch again. Other keys (preset, template, after_success...) only change what the
next file found there is journaled with."""


@dataclass(frozen=True)
class InboxChange:
    """One inbox present before and after, with the keys that differ (sorted)."""

    name: str
    keys: tuple[str, ...]

    @property
    def rewatch(self) -> bool:
        """Whether the watch of this inbox must be placed again."""
        return any(key in WATCH_KEYS for key in self.keys)


@dataclass(frozen=True)
class ReloadPlan:
    """What applying the new settings changes. Names are sorted; an empty plan changes
    nothing (the token is read again all the same)."""

    inboxes_added: tuple[str, ...] = ()
    inboxes_removed: tuple[str, ...] = ()
    inboxes_changed: tuple[InboxChange, ...] = ()
    presets_added: tuple[str, ...] = ()
    presets_removed: tuple[str, ...] = ()
    presets_changed: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    token_changed: bool = False

    @property
    def presets_to_resolve(self) -> tuple[str, ...]:
        """Presets to resolve against the catalogue before the swap: the new and changed."""
        return tuple(sorted(self.presets_added + self.presets_changed))

    @property
    def rewatched(self) -> tuple[str, ...]:
        """Changed inboxes whose watch is placed again."""
        return tuple(c.name for c in self.inboxes_changed if c.rewatch)

    @property
    def applies_anything(self) -> bool:
        """Whether the swap changes inboxes or presets (the token aside)."""
        return bool(
            self.inboxes_added
            or self.inboxes_removed
            or self.inboxes_changed
            or self.presets_added
            or self.presets_removed
            or self.presets_changed
        )

    def summary(self) -> dict[str, object]:
        """The plan as log fields (only the parts that are not empty)."""
        fields: dict[str, object] = {
            "inboxes_added": list(self.inboxes_added),
            "inboxes_removed": list(self.inboxes_removed),
            "inboxes_changed": {c.name: list(c.keys) for c in self.inboxes_changed},
            "presets_added": list(self.presets_added),
            "presets_removed": list(self.presets_removed),
            "presets_changed": list(self.presets_changed),
        }
        return {key: value for key, value in fields.items() if value}


def plan_reload(old: Settings, new: Settings) -> ReloadPlan:
    """What swapping ``old`` (running) for ``new`` (validated) changes."""
    old_inboxes = {ib.display_name: ib for ib in old.inbox}
    new_inboxes = {ib.display_name: ib for ib in new.inbox}
    changed = [
        InboxChange(name, keys)
        for name in sorted(old_inboxes.keys() & new_inboxes.keys())
        if (keys := inbox_keys_changed(old_inboxes[name], new_inboxes[name]))
    ]
    added, removed, modified = _diff_names(old.presets, new.presets)
    return ReloadPlan(
        inboxes_added=tuple(sorted(new_inboxes.keys() - old_inboxes.keys())),
        inboxes_removed=tuple(sorted(old_inboxes.keys() - new_inboxes.keys())),
        inboxes_changed=tuple(changed),
        presets_added=added,
        presets_removed=removed,
        presets_changed=modified,
        needs_restart=needs_restart(old, new),
        token_changed=old.token() != new.token(),
    )


def inbox_keys_changed(old: InboxSection, new: InboxSection) -> tuple[str, ...]:
    """The ``[[inbox]]`` keys whose value differs, sorted."""
    return tuple(
        sorted(key for key in InboxSection.model_fields if getattr(old, key) != getattr(new, key))
    )


def needs_restart(old: Settings, new: Settings) -> tuple[str, ...]:
    """Dotted keys (``journal.path``, ``mvsep.base_url``) that differ and that a reload
    cannot apply, sorted."""
    keys: list[str] = []
    for section in Settings.model_fields:
        if section in RELOADABLE_SECTIONS:
            continue
        before, after = getattr(old, section), getattr(new, section)
        if before == after:
            continue
        keys.extend(
            dotted
            for key in _keys_changed(before, after)
            if (dotted := f"{section}.{key}") not in TOKEN_KEYS
        )
    return tuple(sorted(keys))


def _keys_changed(before: BaseModel, after: BaseModel) -> list[str]:
    return [key for key in type(before).model_fields if getattr(before, key) != getattr(after, key)]


def _diff_names(
    old: Mapping[str, object], new: Mapping[str, object]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(added, removed, changed) names of two mappings, each sorted."""
    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    changed = tuple(sorted(k for k in old.keys() & new.keys() if old[k] != new[k]))
    return added, removed, changed
