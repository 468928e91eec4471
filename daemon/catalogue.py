"""The MVSEP algorithms catalogue: a disk cache of ``/api/app/algorithms`` and preset resolution.

Users write presets the way they think of them (``sep_type = "BS Roformer"``,
``options = {"Vocal model type" = "ver 2025.07 ..."}``); :meth:`Catalogue.resolve` turns that
into the exact request MVSEP takes (``sep_type = 40``, ``add_opt1 = "81"``) or a
:class:`~daemon.errors.ConfigError` whose lines name the closest matches.
:class:`CatalogueCache` keeps the catalogue on disk, refreshes it daily and falls back to a
stale copy when MVSEP is unreachable.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from daemon.errors import ConfigError, MvsepWatchError
from daemon.formats import OutputFormat, parse_output_format
from daemon.mvsep.models import Algorithm, AlgorithmField

log = structlog.get_logger(__name__)

_TEXT_INPUTS = frozenset({"text", "textarea"})
_MAX_SUGGESTIONS = 5
_CACHE_VERSION = 1


class CatalogueUnavailableError(MvsepWatchError):
    """No cached catalogue and MVSEP could not be asked for one."""


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset resolved against the catalogue: exactly what ``create`` will be sent."""

    sep_type: int
    algorithm_name: str
    options: dict[str, str]  # add_opt1..add_opt10 -> option key (or free text), in order
    output_format: OutputFormat
    price_coefficient: float
    price_multiplier: float = 1.0  # the chosen options' ``price_rules``, multiplied
    stems: list[str] = field(default_factory=list)
    premium_only: bool = False  # needs premium (a premium type or format 4/5)


def _norm(text: str) -> str:
    """Case-, space- and punctuation-insensitive form of a name or label."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _base_name(name: str) -> str:
    """``'BS Roformer (vocals, instrumental)'`` -> ``'BS Roformer'``."""
    return re.sub(r"\s*\([^()]*\)\s*$", "", name).strip() or name


def _quote_algo(algo: Algorithm) -> str:
    return f"{algo.name!r} ({algo.render_id})"


def _as_algorithm(entry: Algorithm | Mapping[str, Any]) -> Algorithm:
    return entry if isinstance(entry, Algorithm) else Algorithm.model_validate(dict(entry))


class Catalogue:
    """The separation types MVSEP offers, looked up by number or by (fuzzy) name."""

    def __init__(self, algorithms: Iterable[Algorithm | Mapping[str, Any]]) -> None:
        """Accept the client's :class:`Algorithm` models or raw ``/api/app/algorithms`` dicts."""
        self.algorithms: list[Algorithm] = [_as_algorithm(a) for a in algorithms]
        self._by_id = {a.render_id: a for a in self.algorithms}

    def __len__(self) -> int:
        return len(self.algorithms)

    def get(self, sep_type: int) -> Algorithm | None:
        """The separation type numbered ``sep_type``, or ``None``."""
        return self._by_id.get(sep_type)

    def stems_for(self, sep_type: int) -> list[str]:
        """Stem labels the type produces (``outputs`` labels, else ``output_stems``); may be []."""
        algo = self._by_id.get(sep_type)
        if algo is None:
            return []
        return list(algo.outputs.values()) or list(algo.output_stems)

    # ------------------------------------------------------------------ sep_type lookup

    def find(self, query: str) -> list[Algorithm]:
        """Algorithms matching a name: exact (full or without its ``(stems)``), else by prefix.

        Matching ignores case, spaces and punctuation. One element means a unique match.
        """
        q = _norm(query)
        if not q:
            return []
        for name_of in (_full_key, _base_key):
            exact = [a for a in self.algorithms if name_of(a) == q]
            if exact:
                return _prefer_active(exact)
        return _prefer_active([a for a in self.algorithms if _norm(a.name).startswith(q)])

    def closest(self, query: str, *, active_only: bool = False) -> list[Algorithm]:
        """Up to five algorithms whose names are closest to ``query`` (difflib + substrings)."""
        q = _norm(query)
        pool = [a for a in self.algorithms if a.is_active or not active_only]
        keys: dict[str, list[Algorithm]] = {}
        for algo in pool:
            for key in _search_keys(algo.name):
                keys.setdefault(key, []).append(algo)
        found: list[Algorithm] = []
        for key in difflib.get_close_matches(q, list(keys), n=_MAX_SUGGESTIONS * 2, cutoff=0.6):
            found.extend(keys[key])
        found.extend(a for a in pool if q and q in _norm(a.name))
        unique = {a.render_id: a for a in reversed(found)}  # keep the first occurrence
        return [unique[i] for i in dict.fromkeys(a.render_id for a in found)][:_MAX_SUGGESTIONS]

    def _lookup(self, sep_type: int | str, where: str) -> tuple[Algorithm | None, list[str]]:
        label = f"{where}.sep_type"
        if isinstance(sep_type, int) or str(sep_type).strip().isdigit():
            number = int(sep_type)
            algo = self._by_id.get(number)
            if algo is None:
                return None, [
                    f"{label}: no separation type {number} in the MVSEP catalogue "
                    f"({len(self)} types known; it may have been removed)"
                ]
            return algo, []
        matches = self.find(sep_type)
        if len(matches) == 1:
            return matches[0], []
        if matches:
            listed = ", ".join(_quote_algo(a) for a in matches[:8])
            return None, [
                f"{label}: {sep_type!r} matches several algorithms: {listed} "
                "— write more of the name or the number"
            ]
        close = ", ".join(_quote_algo(a) for a in self.closest(sep_type)) or "none"
        return None, [f"{label}: no algorithm named {sep_type!r} — closest: {close}"]

    # ------------------------------------------------------------------ resolve

    def resolve(
        self,
        *,
        sep_type: int | str,
        options: Mapping[str, str | int],
        output_format: str | int,
        premium: bool | None = None,
        where: str,
    ) -> ResolvedPreset:
        """Resolve a preset to the exact request, or raise ``ConfigError`` listing every problem.

        ``sep_type``: a number or an algorithm name (case/space/punctuation-insensitive;
        exact, exact without the ``(stems)`` part, or a unique prefix). ``options``: keyed by
        ``add_optN`` or by the field's label; values by option key or label (labels
        case-insensitively; exact or unique prefix). Fields not given take their
        ``default_key``; ``text``/``textarea`` fields take any text. Inactive types are
        rejected; premium-only types and formats are rejected when ``premium is False``.
        ``where`` prefixes each problem, e.g. ``config.toml [presets.karaoke]``.
        """
        problems: list[str] = []
        fmt = _resolve_format(output_format, where, problems)
        algo, found_problems = self._lookup(sep_type, where)
        problems += found_problems
        resolved_options: dict[str, str] = {}
        if algo is not None:
            problems += self._check_algorithm(algo, premium, where)
            resolved_options = _resolve_options(algo, options, where, problems)
        if fmt is not None and fmt.premium_only and premium is False:
            problems.append(
                f"{where}.output_format: {fmt.name!r} ({fmt.label}) needs a premium account; "
                "choose mp3, wav16, flac16 or m4a, or enable premium"
            )
        if problems or algo is None or fmt is None:
            raise ConfigError(problems)
        return ResolvedPreset(
            sep_type=algo.render_id,
            algorithm_name=algo.name,
            options=resolved_options,
            output_format=fmt,
            price_coefficient=float(algo.price_coefficient),
            price_multiplier=algo.price_multiplier(resolved_options),
            stems=self.stems_for(algo.render_id),
            premium_only=algo.orientation == 2 or fmt.premium_only,
        )

    def _check_algorithm(self, algo: Algorithm, premium: bool | None, where: str) -> list[str]:
        problems: list[str] = []
        if not algo.is_active:
            query = re.sub(r"^mvsep\s+", "", _base_name(algo.name), flags=re.IGNORECASE)
            close = self.closest(query, active_only=True)
            hint = ", ".join(_quote_algo(a) for a in close) or "none"
            problems.append(
                f"{where}.sep_type: {_quote_algo(algo)} is no longer active at MVSEP "
                f"— closest active: {hint}"
            )
        if algo.orientation == 2 and premium is False:
            problems.append(
                f"{where}.sep_type: {_quote_algo(algo)} needs a premium account "
                "(premium is not enabled for this API token)"
            )
        return problems


def _full_key(algo: Algorithm) -> str:
    return _norm(algo.name)


def _base_key(algo: Algorithm) -> str:
    return _norm(_base_name(algo.name))


def _prefer_active(algos: list[Algorithm]) -> list[Algorithm]:
    active = [a for a in algos if a.is_active]
    return active if len(active) == 1 else algos


def _search_keys(name: str) -> set[str]:
    """Keys a misspelt name is compared with: full, base, base without "MVSep", long words."""
    base = _base_name(name)
    words = re.findall(r"\w+", name.casefold())
    unbranded = _norm(re.sub(r"^mvsep\s+", "", base, flags=re.IGNORECASE))
    return {_norm(name), _norm(base), unbranded, *(w for w in words if len(w) > 2)}


def _resolve_format(value: str | int, where: str, problems: list[str]) -> OutputFormat | None:
    try:
        return parse_output_format(value)
    except ValueError as exc:
        problems.append(f"{where}.output_format: {exc}")
        return None


# ---------------------------------------------------------------------- options


def _field_for(algo: Algorithm, given: str) -> AlgorithmField | None:
    key = given.strip().casefold()
    for fld in algo.fields:
        if fld.name.casefold() == key:
            return fld
    wanted = _norm(given)
    matches = [f for f in algo.fields if wanted and _norm(f.text) == wanted]
    return matches[0] if len(matches) == 1 else None


def _describe_fields(algo: Algorithm) -> str:
    if not algo.fields:
        return "it takes no options"
    listed = ", ".join(f"{f.name} {f.text!r}" for f in sorted(algo.fields, key=lambda f: f.name))
    return f"its options are: {listed}"


def _choice_for(fld: AlgorithmField, value: str) -> list[str]:
    """Option keys matching ``value``: the key itself, else a label (exact, then prefix)."""
    text = value.strip()
    if text in fld.options:
        return [text]
    wanted = _norm(text)
    if not wanted:
        return []
    exact = [k for k, label in fld.options.items() if _norm(label) == wanted]
    if exact:
        return exact
    return [k for k, label in fld.options.items() if _norm(label).startswith(wanted)]


def _describe_choices(fld: AlgorithmField, value: str) -> str:
    items = list(fld.options.items())
    if len(items) > 10:
        labels = {_norm(label): (k, label) for k, label in items}
        close = difflib.get_close_matches(_norm(value), list(labels), n=5, cutoff=0.3)
        items = [labels[c] for c in close] or items[:10]
        prefix = "closest choices"
    else:
        prefix = "choices"
    return f"{prefix}: " + ", ".join(f"{k} = {label!r}" for k, label in items)


def _resolve_value(
    algo: Algorithm, fld: AlgorithmField, value: str | int, where: str
) -> tuple[str | None, str | None]:
    """(option key, None) or (None, problem line) for one given option value."""
    text = str(value)
    if fld.input_type in _TEXT_INPUTS:
        return text, None
    keys = _choice_for(fld, text)
    if len(keys) == 1:
        return keys[0], None
    label = f"{where}.options.{fld.name}"
    if keys:
        listed = ", ".join(f"{k} = {fld.options[k]!r}" for k in keys)
        return None, f"{label}: {text!r} matches several choices of {fld.text!r}: {listed}"
    return None, (
        f"{label}: no choice {text!r} for {fld.text!r} of {_quote_algo(algo)} "
        f"— {_describe_choices(fld, text)}"
    )


def _resolve_options(
    algo: Algorithm, options: Mapping[str, str | int], where: str, problems: list[str]
) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for given, value in options.items():
        fld = _field_for(algo, given)
        if fld is None:
            problems.append(
                f"{where}.options: {given!r} is not an option of {_quote_algo(algo)}; "
                f"{_describe_fields(algo)}"
            )
            continue
        if fld.name in chosen:
            problems.append(f"{where}.options: {fld.name} ({fld.text!r}) is given twice")
            continue
        key, problem = _resolve_value(algo, fld, value, where)
        if problem is not None:
            problems.append(problem)
        elif key is not None:
            chosen[fld.name] = key
    for fld in algo.fields:
        if fld.name not in chosen and fld.default_key is not None:
            chosen[fld.name] = fld.default_key
    return dict(sorted(chosen.items(), key=lambda item: _field_order(item[0])))


def _field_order(name: str) -> tuple[int, str]:
    """``add_opt2`` before ``add_opt10`` (numeric order), unknown names after, by name."""
    found = re.fullmatch(r"add_opt(\d+)", name)
    return (int(found.group(1)), "") if found else (1 << 30, name)


# ---------------------------------------------------------------------- disk cache


class CatalogueCache:
    """``/api/app/algorithms`` cached on disk as JSON, refreshed when older than ``max_age_s``.

    ``fetch`` returns the live catalogue (``Algorithm`` models or raw dicts), e.g.
    ``client.algorithms``. ``clock`` returns epoch seconds (``time.time``).
    """

    def __init__(
        self,
        path: Path,
        *,
        fetch: Callable[[], Sequence[Algorithm | Mapping[str, Any]]],
        max_age_s: float = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._fetch = fetch
        self.max_age_s = max_age_s
        self._clock = clock

    def load(self, *, force_refresh: bool = False) -> Catalogue:
        """The catalogue: the cached copy when fresh, else a fresh fetch, else the stale copy.

        Raises :class:`CatalogueUnavailableError` when there is no cache and fetching fails.
        """
        cached = self._read()
        now = self._clock()
        if cached is not None and not force_refresh:
            fetched_at, entries = cached
            if 0 <= now - fetched_at < self.max_age_s:
                return Catalogue(entries)
        try:
            fresh = [_as_algorithm(a) for a in self._fetch()]
        except Exception as exc:  # any failure to fetch or parse: fall back to the cache
            return self._fallback(cached, exc)
        self._write(fresh, now)
        log.info("algorithms catalogue refreshed", types=len(fresh), path=str(self.path))
        return Catalogue(fresh)

    def refresh(self) -> Catalogue:
        """Fetch the live catalogue and store it; raises whatever fetching raised."""
        fresh = [_as_algorithm(a) for a in self._fetch()]
        self._write(fresh, self._clock())
        return Catalogue(fresh)

    def cached(self) -> tuple[float, Catalogue] | None:
        """The copy on disk and when it was fetched (epoch seconds), or None."""
        found = self._read()
        return None if found is None else (found[0], Catalogue(found[1]))

    def _fallback(
        self, cached: tuple[float, list[dict[str, Any]]] | None, exc: Exception
    ) -> Catalogue:
        if cached is None:
            raise CatalogueUnavailableError(
                f"cannot load the MVSEP algorithms catalogue: no cached copy at {self.path} "
                f"and fetching it failed ({exc}); check the network and the API url"
            ) from exc
        age_h = (self._clock() - cached[0]) / 3600
        log.warning(
            "using stale algorithms catalogue: refresh failed",
            error=str(exc),
            age_h=round(age_h, 1),
            path=str(self.path),
        )
        return Catalogue(cached[1])

    def _read(self) -> tuple[float, list[dict[str, Any]]] | None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            fetched_at = float(doc["fetched_at"])
            entries = doc["algorithms"]
            if not isinstance(entries, list):
                raise TypeError("algorithms is not a list")
            Catalogue(entries)  # validate now rather than on first use
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged cache is ignored, never fatal
            log.warning("ignoring unreadable catalogue cache", path=str(self.path), error=str(exc))
            return None
        return fetched_at, entries

    def _write(self, algorithms: list[Algorithm], now: float) -> None:
        doc = {
            "version": _CACHE_VERSION,
            "fetched_at": now,
            "algorithms": [a.model_dump(mode="json", by_alias=True) for a in algorithms],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(self.path.name + ".part")
        try:
            with open(part, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(part, self.path)
        except OSError as exc:  # a cache that cannot be written only costs a refetch
            part.unlink(missing_ok=True)
            log.warning("cannot write catalogue cache", path=str(self.path), error=str(exc))


# ---------------------------------------------------------------------- where it came from

ORIGIN_LIVE, ORIGIN_CACHE, ORIGIN_BUILTIN = "live", "cache", "built-in"


@dataclass(frozen=True)
class SourcedCatalogue:
    """A catalogue and where it came from, for commands that must say so."""

    catalogue: Catalogue
    origin: str  # ORIGIN_LIVE, ORIGIN_CACHE or ORIGIN_BUILTIN
    fetched_at: float | None = None  # epoch seconds of the copy (None: built-in)
    error: str | None = None  # why the live catalogue could not be had

    def describe(self) -> str:
        """``the live catalogue (58 types)``, ``the cached catalogue of 2026-12-01 10:00 UTC
        (MVSEP unreachable: ...)``, ``the built-in catalogue ...``."""
        count = f"{len(self.catalogue)} types"
        if self.origin == ORIGIN_LIVE:
            return f"the live MVSEP catalogue ({count})"
        why = f"; MVSEP could not be asked: {self.error}" if self.error else ""
        if self.origin == ORIGIN_CACHE and self.fetched_at is not None:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.fetched_at))
            return f"the cached catalogue of {when} ({count}{why})"
        return f"the built-in catalogue shipped with mvsep-watch ({count}{why})"


def builtin_catalogue() -> Catalogue:
    """The snapshot of MVSEP's catalogue shipped in the package (the emulator serves it);
    read as a file, so the ``[emulator]`` extra is not needed."""
    from importlib import resources

    text = resources.files("daemon").joinpath("emulator/catalogue.json").read_text("utf-8")
    return Catalogue(json.loads(text))


def live_or_cached(cache: CatalogueCache, *, builtin: bool = False) -> SourcedCatalogue:
    """The live catalogue (the cache refreshed with it), else the cached copy, else (with
    ``builtin``) the built-in one. Raises :class:`CatalogueUnavailableError` when none is."""
    try:
        fresh = cache.refresh()
        return SourcedCatalogue(fresh, ORIGIN_LIVE, time.time())
    except Exception as exc:  # any failure to fetch: say why, use a copy
        error = str(exc) or type(exc).__name__
    cached = cache.cached()
    if cached is not None:
        return SourcedCatalogue(cached[1], ORIGIN_CACHE, cached[0], error)
    if builtin:
        return SourcedCatalogue(builtin_catalogue(), ORIGIN_BUILTIN, None, error)
    raise CatalogueUnavailableError(
        f"cannot load the MVSEP algorithms catalogue: no cached copy at {cache.path} "
        f"and fetching it failed ({error}); check the network and the API url"
    )
