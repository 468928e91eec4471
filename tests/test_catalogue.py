"""Catalogue resolution against the real 117-entry capture, plus a tiny inline catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.catalogue import Catalogue, CatalogueCache, CatalogueUnavailableError
from daemon.errors import ConfigError
from daemon.mvsep.models import Algorithm

WHERE = "config.toml [presets.karaoke]"


def _field(name: str, text: str, options: dict[str, str], default: str | None,
           input_type: str = "select") -> dict[str, Any]:  # fmt: skip
    return {"name": name, "text": text, "options": json.dumps(options), "default_key": default,
            "input_type": input_type}  # fmt: skip


TINY: list[dict[str, Any]] = [
    {"id": 1, "render_id": 20, "name": "Demucs4 HT (vocals, drums, bass, other)",
     "price_coefficient": 1, "is_active": 1, "orientation": 1,
     "output_stems": '["vocals","drums","bass","other"]',
     "outputs": '{"vocals":"Vocals","drums":"Drums","bass":"Bass","other":"Other"}',
     "algorithm_fields": [_field("add_opt1", "Model type",
                                 {"0": "htdemucs_ft (High Quality, Slow)",
                                  "1": "htdemucs (Good Quality, Fast)"}, "1")]},
    {"id": 2, "render_id": 26, "name": "Ensemble (vocals, instrum)", "price_coefficient": 2,
     "is_active": 1, "orientation": 2, "output_stems": '["vocals","instrum"]',
     "outputs": None, "algorithm_fields": []},
    {"id": 3, "render_id": 35, "name": "MVSep MelBand Roformer (vocals, instrum)",
     "price_coefficient": 1, "is_active": 0, "orientation": 0, "algorithm_fields": []},
    {"id": 4, "render_id": 48, "name": "MelBand Roformer (vocals, instrumental)",
     "price_coefficient": "1.5", "is_active": "1", "orientation": 0, "algorithm_fields": []},
]  # fmt: skip


@pytest.fixture
def tiny() -> Catalogue:
    return Catalogue(TINY)


@pytest.fixture
def real(captures: Path) -> Catalogue:
    return Catalogue(json.loads((captures / "algorithms.json").read_text(encoding="utf-8")))


def _problems(catalogue: Catalogue, **preset: Any) -> list[str]:
    preset.setdefault("options", {})
    preset.setdefault("output_format", "flac16")
    with pytest.raises(ConfigError) as info:
        catalogue.resolve(where=WHERE, **preset)
    return info.value.problems


# ------------------------------------------------------------------ tiny catalogue


def test_tiny_by_name_label_and_defaults(tiny: Catalogue) -> None:
    label = "HTDEMUCS_FT (high quality, slow)"
    got = tiny.resolve(sep_type="demucs4 ht", options={"model TYPE": label},
                       output_format="flac16", where=WHERE)  # fmt: skip
    assert (got.sep_type, got.options, got.output_format.code) == (20, {"add_opt1": "0"}, 2)
    assert got.stems == ["Vocals", "Drums", "Bass", "Other"]
    assert got.price_coefficient == 1.0 and not got.premium_only
    default = tiny.resolve(sep_type=20, options={}, output_format=0, where=WHERE)
    assert default.options == {"add_opt1": "1"}


def test_tiny_accepts_models_too() -> None:
    models = [Algorithm.model_validate(a) for a in TINY]
    assert Catalogue(models).resolve(sep_type="48", options={}, output_format="mp3",
                                     where=WHERE).price_coefficient == 1.5  # fmt: skip


def test_tiny_premium(tiny: Catalogue) -> None:
    assert tiny.resolve(sep_type=26, options={}, output_format="flac24", premium=None,
                        where=WHERE).premium_only  # fmt: skip
    problems = _problems(tiny, sep_type=26, output_format="flac24", premium=False)
    assert problems == [
        f"{WHERE}.sep_type: 'Ensemble (vocals, instrum)' (26) needs a premium account "
        "(premium is not enabled for this API token)",
        f"{WHERE}.output_format: 'flac24' (flac (24 bit)) needs a premium account; "
        "choose mp3, wav16, flac16 or m4a, or enable premium",
    ]
    assert tiny.stems_for(26) == ["vocals", "instrum"]  # no `outputs`: output_stems


def test_tiny_collects_every_problem(tiny: Catalogue) -> None:
    problems = _problems(tiny, sep_type=20, options={"add_opt9": "x", "Model type": "nope"},
                         output_format="ogg")  # fmt: skip
    assert len(problems) == 3
    assert problems[0].startswith(f"{WHERE}.output_format: unknown output format 'ogg'")
    assert problems[1] == (
        f"{WHERE}.options: 'add_opt9' is not an option of "
        "'Demucs4 HT (vocals, drums, bass, other)' (20); its options are: add_opt1 'Model type'"
    )
    assert problems[2].startswith(f"{WHERE}.options.add_opt1: no choice 'nope' for 'Model type'")
    assert "0 = 'htdemucs_ft (High Quality, Slow)'" in problems[2]


# ------------------------------------------------------------------ real capture


def test_real_capture_loads_all(real: Catalogue) -> None:
    assert len(real) == 117
    for algo in real.algorithms:  # every type resolves with its defaults
        if algo.is_active:
            got = real.resolve(sep_type=algo.render_id, options={}, output_format="mp3",
                               where=WHERE)  # fmt: skip
            assert set(got.options) <= {f.name for f in algo.fields}


@pytest.mark.parametrize(
    ("sep_type", "expected"),
    [
        (40, 40),
        ("40", 40),
        ("BS Roformer", 40),
        ("bs-roformer (vocals, instrumental)", 40),
        ("BS ROFORMER SW", 63),
        ("Demucs4 HT", 20),
        ("demucs4ht", 20),
        ("MelBand Roformer", 48),
        ("MVSep Karaoke", 49),
        ("Qwen3", 120),
        ("spleeter", 0),
        (0, 0),
    ],
)
def test_real_sep_type_by_number_or_name(real: Catalogue, sep_type: int | str,
                                         expected: int) -> None:  # fmt: skip
    got = real.resolve(sep_type=sep_type, options={}, output_format="wav16", where=WHERE)
    assert got.sep_type == expected
    assert got.algorithm_name == real.get(expected).name  # type: ignore[union-attr]


def test_real_options_by_key_or_label(real: Catalogue) -> None:
    by_key = real.resolve(sep_type=40, options={"add_opt1": 171, "add_opt3": "1"},
                          output_format=1, where=WHERE)  # fmt: skip
    by_label = real.resolve(sep_type="BS Roformer",
                            options={"Vocal model type": "124 bands (SDR vocals: 12.33, "
                                                         "SDR instrum: 18.64)",
                                     "overlap": "87.5%", "SET OF STEMS": "include fullness"},
                            output_format="wav16", where=WHERE)  # fmt: skip
    assert by_key.options == {"add_opt1": "171", "add_opt2": "2", "add_opt3": "1"}
    assert by_label.options == {"add_opt1": "171", "add_opt2": "8", "add_opt3": "1"}
    assert by_key.stems == ["Vocals", "Other"]


def test_real_add_opt4_and_text_fields(real: Catalogue) -> None:
    got = real.resolve(sep_type=120, options={"add_opt1": "Hello, world!", "Language": "German",
                                              "add_opt4": "Extract vocals first"},
                       output_format="wav16", where=WHERE)  # fmt: skip
    assert got.options == {"add_opt1": "Hello, world!", "add_opt3": "german", "add_opt4": "1"}


def test_real_select_without_default_is_left_to_mvsep(real: Catalogue) -> None:
    assert real.resolve(sep_type=17, options={}, output_format=0, where=WHERE).options == {}


def test_real_misspelt_name_lists_closest(real: Catalogue) -> None:
    (problem,) = _problems(real, sep_type="Demcus")
    assert problem.startswith(f"{WHERE}.sep_type: no algorithm named 'Demcus' — closest: ")
    assert "'Demucs4 HT (vocals, drums, bass, other)' (20)" in problem
    (problem,) = _problems(real, sep_type="Roformr")
    assert "'BS Roformer (vocals, instrumental)' (40)" in problem
    (problem,) = _problems(real, sep_type="karaoke")
    assert "'MVSep Karaoke (lead/back vocals)' (49)" in problem
    assert "'MDX-B Karaoke (lead/back vocals)' (12)" in problem
    (problem,) = _problems(real, sep_type="zzzzqqq")
    assert problem.endswith("closest: none")


def test_real_ambiguous_name(real: Catalogue) -> None:
    (problem,) = _problems(real, sep_type="Ensemble")
    assert problem.startswith(f"{WHERE}.sep_type: 'Ensemble' matches several algorithms: ")
    assert "(26)" in problem and "(28)" in problem and "the number" in problem


def test_real_unknown_and_inactive_numbers(real: Catalogue) -> None:
    assert _problems(real, sep_type=11) == [
        f"{WHERE}.sep_type: no separation type 11 in the MVSEP catalogue "
        "(117 types known; it may have been removed)"
    ]
    (problem,) = _problems(real, sep_type=35)
    assert problem.startswith(
        f"{WHERE}.sep_type: 'MVSep MelBand Roformer (vocals, instrum)' (35) is no longer active "
        "at MVSEP — closest active: 'MelBand Roformer (vocals, instrumental)' (48)"
    )


def test_real_bad_option_values(real: Catalogue) -> None:
    problems = _problems(real, sep_type=40, options={"add_opt1": "ver", "Overlap": "50%",
                                                     "add_opt2": "8"})  # fmt: skip
    assert problems[0].startswith(f"{WHERE}.options.add_opt1: 'ver' matches several choices")
    assert problems[1] == f"{WHERE}.options: add_opt2 ('Overlap') is given twice"
    (problem,) = _problems(real, sep_type=40, options={"add_opt1": "ver 2099"})
    assert "— choices: 3 = 'ver. 2024.02" in problem and "172 = " in problem  # all ten
    (problem,) = _problems(real, sep_type=120, options={"Language": "Frnch"})
    assert "— closest choices: french = 'French'" in problem  # eleven: only the closest


def test_real_premium_only(real: Catalogue) -> None:
    premium = [a.render_id for a in real.algorithms if a.orientation == 2]
    assert sorted(premium) == [26, 28, 30]
    for sep_type in premium:
        (problem,) = _problems(real, sep_type=sep_type, premium=False)
        assert "needs a premium account" in problem
        assert real.resolve(sep_type=sep_type, options={}, output_format="flac24", premium=True,
                            where=WHERE).premium_only  # fmt: skip


# ------------------------------------------------------------------ disk cache


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.calls = 0
        self.fail: Exception | None = None

    def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.entries


def test_cache_fresh_stale_and_offline(tmp_path: Path) -> None:
    clock, fetch = FakeClock(), Fetcher(TINY)
    path = tmp_path / "state" / "algorithms.json"
    cache = CatalogueCache(path, fetch=fetch, clock=clock)
    assert len(cache.load()) == 4 and fetch.calls == 1 and path.exists()
    clock.now += 3600
    assert len(cache.load()) == 4 and fetch.calls == 1  # fresh: no fetch
    clock.now += 86400
    fetch.entries = TINY[:2]
    assert len(cache.load()) == 2 and fetch.calls == 2  # older than a day: refreshed
    clock.now += 2 * 86400
    fetch.fail = ConnectionError("MVSEP is down")
    assert len(cache.load()) == 2 and fetch.calls == 3  # stale copy used offline
    assert not list(path.parent.glob("*.part"))


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "algorithms.json"
    CatalogueCache(path, fetch=Fetcher(TINY), clock=FakeClock()).load()
    offline = Fetcher([])
    offline.fail = OSError("no network")
    again = CatalogueCache(path, fetch=offline, clock=FakeClock(1_000_100.0)).load()
    assert again.resolve(sep_type="demucs4", options={}, output_format=0,
                         where=WHERE).options == {"add_opt1": "1"}  # fmt: skip
    assert offline.calls == 0


def test_no_cache_and_no_network_is_a_clear_error(tmp_path: Path) -> None:
    fetch = Fetcher([])
    fetch.fail = ConnectionError("connection refused")
    cache = CatalogueCache(tmp_path / "algorithms.json", fetch=fetch, clock=FakeClock())
    with pytest.raises(CatalogueUnavailableError, match="no cached copy .*connection refused"):
        cache.load()


def test_damaged_cache_is_refetched(tmp_path: Path) -> None:
    path = tmp_path / "algorithms.json"
    path.write_text("{not json")
    fetch = Fetcher(TINY)
    assert len(CatalogueCache(path, fetch=fetch, clock=FakeClock()).load()) == 4
    assert fetch.calls == 1 and json.loads(path.read_text())["algorithms"]


def test_real_capture_round_trips_through_cache(tmp_path: Path, captures: Path) -> None:
    raw = json.loads((captures / "algorithms.json").read_text(encoding="utf-8"))
    path = tmp_path / "algorithms.json"
    CatalogueCache(path, fetch=lambda: raw, clock=FakeClock()).load()
    cached = CatalogueCache(path, fetch=Fetcher([]), clock=FakeClock()).load()
    assert [a.render_id for a in cached.algorithms] == [a["render_id"] for a in raw]
    assert cached.resolve(sep_type=120, options={}, output_format=0,
                          where=WHERE).options == {"add_opt3": "auto", "add_opt4": "0"}  # fmt: skip


# ------------------------------------------------------------------ ten fields (sep_type 121)

# The capture has no type past add_opt4; the shape of sep_type 121 (add_opt1..add_opt10) is
# taken from the public clients (../shared/mvsep-api.md, "Learned later").
TEN: list[dict[str, Any]] = [
    {"id": 9, "render_id": 121, "name": "Many Options (vocals, other)", "price_coefficient": 1,
     "is_active": 1, "orientation": 0, "output_stems": '["vocals","other"]',
     "algorithm_fields": [
         *(_field(f"add_opt{n}", f"Setting {n}", {"0": f"off {n}", "1": f"on {n}"}, "0")
           for n in range(1, 10)),
         _field("add_opt10", "Prompt", {}, None, input_type="text"),
     ]},
]  # fmt: skip


def test_all_ten_options_by_key_label_and_default() -> None:
    ten = Catalogue(TEN)
    got = ten.resolve(sep_type=121, options={"add_opt5": "1", "Setting 9": "on 9",
                                             "add_opt10": "a free prompt"},
                      output_format="mp3", where=WHERE)  # fmt: skip
    expected = {f"add_opt{n}": "0" for n in range(1, 10)}
    expected.update({"add_opt5": "1", "add_opt9": "1", "add_opt10": "a free prompt"})
    assert got.options == expected
    assert list(got.options) == [f"add_opt{n}" for n in range(1, 11)]  # numeric order


def test_problems_past_add_opt4_name_the_key() -> None:
    problems = _problems(Catalogue(TEN), sep_type=121, options={"add_opt7": "maybe",
                                                                "add_opt11": "1"})  # fmt: skip
    assert problems[0].startswith(f"{WHERE}.options.add_opt7: no choice 'maybe' for 'Setting 7'")
    assert problems[1].startswith(f"{WHERE}.options: 'add_opt11' is not an option of")
    assert "add_opt10 'Prompt'" in problems[1]
