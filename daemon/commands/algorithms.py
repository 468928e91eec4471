"""``mvsep-watch algorithms [SEARCH] [--json]``: the separation types MVSEP offers.

For each: the render id (``sep_type``), name, stems, price coefficient, whether it needs
premium, and its options (``add_optN``, label, choices by key and label, the default). The
live catalogue refreshes the cache; offline, the cached copy is shown and the output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from daemon.catalogue import (
    ORIGIN_LIVE,
    Catalogue,
    CatalogueUnavailableError,
    SourcedCatalogue,
    live_or_cached,
)
from daemon.commands import EXIT_FAIL, EXIT_OK, SubParsers, help_text
from daemon.commands.quick import catalogue_cache, quick_client, settings_for
from daemon.mvsep.models import Algorithm, AlgorithmField

_MANY_CHOICES = 12  # a field with more choices lists them one a line


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "algorithms",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "search", nargs="*", metavar="SEARCH", help="a number, or words of the name (any case)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings, _ = settings_for(args, require_token=False)
    with quick_client(settings) as client:
        try:
            sourced = live_or_cached(catalogue_cache(settings, client))
        except CatalogueUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAIL
    query = " ".join(args.search)
    found = search(sourced.catalogue, query)
    if args.json:
        print(json.dumps(as_json(sourced, found), indent=2, ensure_ascii=False))
    else:
        print(render_table(sourced, found, query))
    return EXIT_OK


def search(catalogue: Catalogue, query: str | None) -> list[Algorithm]:
    """The algorithms a query names: its number, else every word in the name (any case)."""
    if not query or not query.strip():
        return list(catalogue.algorithms)
    text = query.strip()
    if text.isdigit():
        algo = catalogue.get(int(text))
        return [algo] if algo is not None else []
    words = text.casefold().split()
    return [a for a in catalogue.algorithms if all(w in a.name.casefold() for w in words)]


def stems_of(algo: Algorithm) -> list[str]:
    return list(algo.outputs.values()) or list(algo.output_stems)


def field_json(fld: AlgorithmField) -> dict[str, Any]:
    return {
        "key": fld.name,
        "label": fld.text,
        "input_type": fld.input_type,
        "default": fld.default_key,
        "choices": dict(fld.options),
    }


def algorithm_json(algo: Algorithm) -> dict[str, Any]:
    return {
        "render_id": algo.render_id,
        "name": algo.name,
        "stems": stems_of(algo),
        "price_coefficient": algo.price_coefficient,
        "premium_only": algo.premium_only,
        "active": algo.is_active,
        "options": [field_json(f) for f in algo.fields],
    }


def as_json(sourced: SourcedCatalogue, found: list[Algorithm]) -> dict[str, Any]:
    fetched = sourced.fetched_at
    return {
        "source": sourced.origin,
        "fetched_at": None if fetched is None else _utc(fetched),
        "error": sourced.error,
        "algorithms": [algorithm_json(a) for a in found],
    }


def render_table(sourced: SourcedCatalogue, found: list[Algorithm], query: str | None) -> str:
    lines = [f"From {sourced.describe()}."]
    if sourced.origin != ORIGIN_LIVE:
        lines.append("Offline: this copy may be out of date.")
    if not found:
        lines.append(f"No algorithm matches {query!r}.")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'id':>4}  {'name':<48} {'price':>5}  premium  stems")
    for algo in found:
        lines.extend(_algorithm_lines(algo))
    lines.append("")
    lines.append(
        "In a preset: sep_type = ID or the name; add_optN = a choice's key or label "
        "(unset options take the default)."
    )
    return "\n".join(lines)


def _algorithm_lines(algo: Algorithm) -> list[str]:
    name = algo.name if algo.is_active else f"{algo.name} (inactive)"
    premium = "yes" if algo.premium_only else "no"
    price = f"{algo.price_coefficient:g}"
    stems = ", ".join(stems_of(algo)) or "-"
    lines = [f"{algo.render_id:>4}  {name:<48} {price:>5}  {premium:<7}  {stems}"]
    for fld in sorted(algo.fields, key=lambda f: _field_number(f.name)):
        lines.extend(_field_lines(fld))
    return lines


def _field_lines(fld: AlgorithmField) -> list[str]:
    head = f"{'':6}{fld.name} {fld.text!r}"
    if not fld.options:
        default = f" (default {fld.default_key!r})" if fld.default_key else ""
        return [f"{head}: free text{default}"]
    choices = [
        f"{key} = {label!r}" + (" (default)" if key == fld.default_key else "")
        for key, label in fld.options.items()
    ]
    if len(choices) > _MANY_CHOICES or sum(map(len, choices)) > 90:
        return [f"{head}:", *(f"{'':10}{c}" for c in choices)]
    return [f"{head}: " + ", ".join(choices)]


def _field_number(name: str) -> int:
    digits = name.removeprefix("add_opt")
    return int(digits) if digits.isdigit() else 1 << 30


def _utc(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
