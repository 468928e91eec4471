"""PURE: the lines a broken config is reported with (``daemon/config.py`` validates).

Each line names the file, the key (``[[inbox]] #2 path``) and what to do; an unknown key
says what it was probably meant to be (difflib), or which section it belongs in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

RENAMED_KEYS = {
    "backoff_base_s": "retry_base_s",
    "backoff_cap_s": "retry_cap_s",
    "settle_seconds": "settle_s",
}
"""Keys of older versions: one name per setting from config file to code."""
UNKNOWN_KEY = "unknown key (misspelt, or in the wrong section?)"

Sections = Mapping[str, Collection[str]]
"""Section name -> its keys (``{"engine": {"max_transfers", ...}, ...}``)."""


def section_label(name: str) -> str:
    return {"inbox": "[[inbox]]", "presets": "[presets.NAME]"}.get(name, f"[{name}]")


def unknown_key_message(loc: Sequence[Any], sections: Sections) -> str:
    """``unknown key — did you mean [engine]?`` for a section, ``... max_transfers?`` for a
    key, ``... it belongs in [engine]`` for a key of another section."""
    key = str(loc[-1]) if loc else ""
    section = str(loc[0]) if len(loc) > 1 else None
    if section == "presets" and re.fullmatch(r"add_opt\d+", key):
        return "unknown key — the options are add_opt1..add_opt10"
    names = list(sections) if section is None else list(sections.get(section, ()))
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        meant = section_label(close[0]) if section is None else close[0]
        return f"unknown key — did you mean {meant}?"
    homes = [section_label(n) for n, keys in sections.items() if n != section and key in keys]
    if homes:
        return f"unknown key — it belongs in {' or '.join(homes)}"
    return UNKNOWN_KEY


def format_error(
    path: Path, err: Mapping[str, Any], env: Mapping[str, str], *, sections: Sections, prefix: str
) -> str:
    """One pydantic error as one line; ``prefix`` is the environment prefix (an override
    from the environment says so)."""
    loc = tuple(err.get("loc", ()))
    where = describe_location(loc)
    kind = err.get("type", "")
    if kind == "extra_forbidden" and loc and str(loc[-1]) in RENAMED_KEYS:
        message = f"renamed: write {RENAMED_KEYS[str(loc[-1])]} instead"
    elif kind == "extra_forbidden":
        message = unknown_key_message(loc, sections)
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        value = err.get("input")
        if "token" not in where and not isinstance(value, dict | list):
            message += f" (got {value!r})"
    env_name = prefix + "__".join(str(p).upper() for p in loc)
    origin = f" (from ${env_name})" if env_name in env else ""
    return f"{path}: {where}: {message}{origin}"


def describe_location(loc: Sequence[Any]) -> str:
    """('inbox', 1, 'path') -> '[[inbox]] #2 path'; ('presets', 'k', 'sep_type') -> ..."""
    if not loc:
        return "(top level)"
    head, rest = str(loc[0]), list(loc[1:])
    if head == "inbox" and rest and isinstance(rest[0], int):
        where = f"[[inbox]] #{rest.pop(0) + 1}"
    elif head == "presets" and rest:
        where = f"[presets.{rest.pop(0)}]"
    elif not rest:
        return head
    else:
        where = f"[{head}]"
    return " ".join([where, *(str(p) for p in rest)]) if rest else where
