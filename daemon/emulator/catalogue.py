"""The separation types the emulator serves: the built-in catalogue or a real capture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

FALLBACK_STEMS: tuple[tuple[str, str], ...] = (
    ("vocals", "Vocals"),
    ("instrumental", "Instrumental"),
)


@dataclass(frozen=True)
class FieldSpec:
    """One ``add_optN`` field of a type: ``options`` is empty for text/textarea fields.

    ``default`` is what an empty value means: ``default_key``, else (a guess, as for the real
    sep_type 17 whose select has ``default_key: null``) the first option; ``""`` for text.
    """

    name: str
    input_type: str
    options: frozenset[str]
    default: str = ""
    multipliers: tuple[tuple[str, float], ...] = ()  # price_rules: (option key, multiplier)

    def accepts(self, value: str) -> bool:
        """Whether ``value`` is a valid value of this field."""
        if self.input_type in ("text", "textarea") or not self.options:
            return True
        return value in self.options


@dataclass(frozen=True)
class TypeSpec:
    """What the emulator needs to know about one separation type."""

    render_id: int
    name: str
    price_coefficient: float
    is_active: bool
    orientation: int
    fields: dict[str, FieldSpec]
    stems: tuple[tuple[str, str], ...]  # (key, label)
    description: str
    raw: dict[str, Any]

    @property
    def premium_only(self) -> bool:
        """Types with orientation 2 are for premium accounts only."""
        return self.orientation == 2

    def price_multiplier(self, options: dict[str, str]) -> float:
        """The chosen options' ``price_rules`` multipliers (an empty value: the default)."""
        factor = 1.0
        for spec in self.fields.values():
            chosen = options.get(spec.name) or spec.default
            factor *= dict(spec.multipliers).get(chosen, 1.0)
        return factor


class Catalogue:
    """The served catalogue: the raw JSON array plus a parsed index by ``render_id``."""

    def __init__(self, raw: list[dict[str, Any]]) -> None:
        self.raw = raw
        self.types: dict[int, TypeSpec] = {}
        for entry in raw:
            spec = _parse_type(entry)
            self.types[spec.render_id] = spec

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        """Load ``path`` (a capture of ``/api/app/algorithms``) or the built-in catalogue."""
        if path is None:
            text = resources.files("daemon.emulator").joinpath("catalogue.json").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of separation types")
        return cls(data)

    def get(self, render_id: int) -> TypeSpec | None:
        """The type with this ``sep_type``, or None."""
        return self.types.get(render_id)


def _json_field(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else default
        except json.JSONDecodeError:
            return default
    return default if value is None else value


def _parse_type(entry: dict[str, Any]) -> TypeSpec:
    fields: dict[str, FieldSpec] = {}
    for field in entry.get("algorithm_fields") or []:
        spec = _parse_field(field)
        fields[spec.name] = spec
    descriptions = entry.get("algorithm_descriptions") or []
    english = [d for d in descriptions if d.get("lang") == "en"] or descriptions
    description = str(
        entry.get("description") or (english[0].get("short_description") if english else "") or ""
    )
    return TypeSpec(
        render_id=int(entry["render_id"]),
        name=str(entry.get("name", "")),
        price_coefficient=float(entry.get("price_coefficient") or 1),
        is_active=bool(int(entry.get("is_active", 1))),
        orientation=int(entry.get("orientation") or 0),
        fields=fields,
        stems=_stems(entry),
        description=description,
        raw=entry,
    )


def _parse_field(field: dict[str, Any]) -> FieldSpec:
    options = _json_field(field.get("options"), {})
    ordered = [str(k) for k in options] if isinstance(options, dict) else []
    input_type = str(field.get("input_type") or "select")
    default_key = field.get("default_key")
    default = ""
    if input_type not in ("text", "textarea"):
        if default_key is not None and (not ordered or str(default_key) in ordered):
            default = str(default_key)
        elif ordered:
            default = ordered[0]
    rules = [r for r in field.get("price_rules") or [] if r.get("mode") == "multiplier"]
    multipliers = tuple((str(r.get("option_key")), float(r.get("value") or 1)) for r in rules)
    return FieldSpec(str(field["name"]), input_type, frozenset(ordered), default, multipliers)


def _stems(entry: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Stem keys from ``output_stems`` with labels from ``outputs``; fall back to 2 stems."""
    names = _json_field(entry.get("output_stems"), [])
    labels = _json_field(entry.get("outputs"), {})
    if not isinstance(labels, dict):
        labels = {}
    if not isinstance(names, list) or not names:
        names = list(labels)
    stems = [(str(n), str(labels.get(n) or str(n).replace("-", " ").capitalize())) for n in names]
    unique = list(dict.fromkeys(stems))
    return tuple(unique) if unique else FALLBACK_STEMS
