"""Model parsing against the real MVSEP captures and the API's odd shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.mvsep import (
    Algorithm,
    HistoryEntry,
    JobStatus,
    MvsepClient,
    RemoteStatus,
    StemFile,
    UserInfo,
)
from daemon.mvsep.failures import CallContext, check_response, error_text


def _postman_items(captures: Path) -> Iterator[dict[str, Any]]:
    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            if "item" in item:
                yield from walk(item["item"])
            else:
                yield item

    collection = json.loads((captures / "postman-collection.json").read_text())
    yield from walk(collection["item"])


def _examples(captures: Path, name: str) -> list[dict[str, Any]]:
    """The saved example responses of the Postman request called ``name``."""
    return [
        resp
        for item in _postman_items(captures)
        if item["name"] == name
        for resp in item.get("response", [])
    ]


def _flat(body: dict[str, Any]) -> dict[str, Any]:
    return {**body["data"], "status": body["status"]}


# ---------------------------------------------------------------------------------------------
# the real catalogue


@pytest.fixture
def catalogue(captures: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((captures / "algorithms.json").read_text())
    return data


def test_all_real_catalogue_entries_parse(catalogue: list[dict[str, Any]]) -> None:
    algorithms = [Algorithm.model_validate(entry) for entry in catalogue]
    assert len(algorithms) == 117
    for algo, raw in zip(algorithms, catalogue, strict=True):
        assert algo.render_id == raw["render_id"]
        assert algo.id == raw["id"]
        assert len(algo.fields) == len(raw["algorithm_fields"])
        for field, raw_field in zip(algo.fields, raw["algorithm_fields"], strict=True):
            assert field.options == {k: str(v) for k, v in json.loads(raw_field["options"]).items()}
            assert field.input_type in {"select", "text", "textarea"}
            if field.input_type == "select" and field.default_key is not None:
                assert field.default_key in field.options, (algo.name, field.name)


def test_catalogue_quirks(catalogue: list[dict[str, Any]]) -> None:
    by_sep_type = {a.render_id: a for a in map(Algorithm.model_validate, catalogue)}
    ensemble = by_sep_type[26]
    assert ensemble.id == 27 and ensemble.id != ensemble.render_id
    assert ensemble.premium_only and ensemble.price_coefficient == 2.0
    assert ensemble.output_stems == ["vocals", "instrum"]
    assert ensemble.outputs == {"vocals": "Vocals", "other": "Other"}
    assert ensemble.group == "Ensembles"
    assert any(not a.is_active for a in by_sep_type.values())
    assert 11 not in by_sep_type
    with_opt4 = [a for a in by_sep_type.values() if any(f.name == "add_opt4" for f in a.fields)]
    assert with_opt4
    free_text = [f for a in by_sep_type.values() for f in a.fields if f.input_type != "select"]
    assert free_text and all(f.options == {} and f.default_key is None for f in free_text)
    assert any(a.output_stems == [] for a in by_sep_type.values())  # null output_stems


def test_catalogue_through_the_client(catalogue: list[dict[str, Any]]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=catalogue))
    with MvsepClient(
        base_url="https://mvsep.test", api_token="t", http=httpx.Client(transport=transport)
    ) as client:
        algorithms = client.algorithms()
    assert [a.render_id for a in algorithms] == [e["render_id"] for e in catalogue]


# ---------------------------------------------------------------------------------------------
# postman examples


def test_postman_get_waiting_and_done_without_files(captures: Path) -> None:
    bodies = [json.loads(r["body"]) for r in _examples(captures, "Separation")]
    waiting = next(JobStatus.model_validate(_flat(b)) for b in bodies if b["status"] == "waiting")
    assert (waiting.queue_count, waiting.current_order) == (3, 2)
    assert not waiting.is_finished
    done = next(JobStatus.model_validate(_flat(b)) for b in bodies if b["status"] == "done")
    assert done.status == "done" and done.files == []
    assert not done.is_finished  # "done" before the files exist
    assert done.output_format == "mp3 (320 kbps)" and done.size == "5.70 MB"
    assert done.input_file is not None and done.input_file.url.startswith("https://")
    assert done.date == "2024-01-19 12:40:25"


def test_postman_user_from_login(captures: Path) -> None:
    ok = next(r for r in _examples(captures, "Login") if r["code"] == 200)
    user = UserInfo.model_validate(json.loads(ok["body"])["data"])
    assert user.premium_minutes == 54.0
    assert user.premium_enabled is True and user.long_filenames_enabled is True
    assert "api_token" not in user.model_dump()


def test_postman_login_error_is_laravel_shape(captures: Path) -> None:
    bad = next(r for r in _examples(captures, "Login") if r["code"] == 400)
    response = httpx.Response(400, content=bad["body"].encode(), headers={"X-A": "1"})
    text = error_text(response.json())
    assert "email: The email field is required." in text
    assert "password: The password field is required." in text
    from daemon.errors import ApiRejected

    with pytest.raises(ApiRejected, match="email field is required"):
        check_response(CallContext("login", "POST", "/api/app/login"), response)


def test_postman_history_with_rate_limit_headers(captures: Path) -> None:
    example = _examples(captures, "Separation History")[0]
    headers = {h["key"]: h["value"] for h in example["header"]}
    body = example["body"]
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body.encode(), headers=headers)
    )
    http = httpx.Client(transport=transport)
    with MvsepClient(base_url="https://mvsep.test", api_token="t", http=http) as client:
        entries = client.separation_history(start=1, limit=2)
        assert client.rate_limit.limit == int(headers["X-RateLimit-Limit"])
        assert client.rate_limit.remaining == int(headers["X-RateLimit-Remaining"])
    first = entries[0]
    assert first.hash.startswith("20240212161927-")
    assert first.job_exists is True and first.credits == 2.0 and first.time_left == -2031
    assert first.algorithm_name == "Demucs4 HT (vocals, drums, bass, other)"
    assert first.render_id == 20 and first.created_at == "2024-02-12 16:19:29"


# ---------------------------------------------------------------------------------------------
# synthetic shapes


def test_numbers_and_booleans_as_strings() -> None:
    user = UserInfo.model_validate(
        {
            "name": "n",
            "email": "e",
            "api_token": "SECRET",
            "premium_minutes": "54.5",
            "premium_enabled": "0",
            "long_filenames_enabled": 1,
            "current_queue": "2",
        }
    )
    assert user.premium_minutes == 54.5 and user.premium_enabled is False
    assert user.long_filenames_enabled is True and user.current_queue == 2
    assert "SECRET" not in repr(user)


def test_is_finished_needs_every_url() -> None:
    files = [{"type": "Vocals", "url": "https:\\/\\/h\\/v.mp3", "size": 12}, {"type": "Other"}]
    status = JobStatus.model_validate({"status": "done", "files": files})
    assert status.files[0].url == "https://h/v.mp3" and status.files[0].size == "12"
    assert not status.is_finished
    files[1]["url"] = "https://h/o.mp3"
    assert JobStatus.model_validate({"status": "done", "files": files}).is_finished
    assert not JobStatus.model_validate({"status": "processing", "files": files}).is_finished


def test_job_status_leniency() -> None:
    status = JobStatus.model_validate(
        {
            "status": "distributing",
            "finished_chunks": "3",
            "all_chunks": 7.0,
            "files": None,
            "queue_count": "",
            "unknown": {"x": 1},
        }
    )
    assert (status.finished_chunks, status.all_chunks, status.queue_count) == (3, 7, None)
    assert status.files == []
    keyed = JobStatus.model_validate({"status": "done", "files": {"a": {"url": "u", "type": "t"}}})
    assert keyed.files == [StemFile(type="t", url="u")]


def test_history_and_remote_leniency() -> None:
    entry = HistoryEntry.model_validate(
        {"hash": "h", "job_exists": 0, "credits": None, "time_left": "-5", "algorithm": "X"}
    )
    assert entry.job_exists is False and entry.credits is None and entry.time_left == -5
    assert entry.algorithm_name == "X" and entry.render_id is None
    remote = RemoteStatus.model_validate({"status": "done", "hash": "real", "link": "a\\/b"})
    assert remote.hash == "real" and remote.link == "a/b"


def test_algorithm_options_shapes() -> None:
    algo = Algorithm.model_validate(
        {
            "render_id": "40",
            "name": "BS",
            "price_coefficient": "1.5",
            "is_active": "1",
            "orientation": 0,
            "output_stems": None,
            "outputs": "not json",
            "algorithm_fields": [
                {"name": "add_opt1", "options": '["a", "b"]', "default_key": 0},
                {"name": "add_opt2", "options": {"10": "x", "3": 4}, "default_key": None},
                {"name": "add_opt3", "options": ""},
            ],
        }
    )
    assert algo.render_id == 40 and algo.price_coefficient == 1.5 and algo.is_active
    assert algo.output_stems == [] and algo.outputs == {}
    assert algo.fields[0].options == {"0": "a", "1": "b"} and algo.fields[0].default_key == "0"
    assert algo.fields[1].options == {"10": "x", "3": "4"}
    assert algo.fields[2].options == {}
