"""Logging: JSON lines off a terminal, and the API token never reaches a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from daemon.logs import REDACTOR, configure_logging

TOKEN = "tok-9f8e7d6c5b4a"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out, secrets=[TOKEN])
    yield out
    REDACTOR.clear()
    logging.getLogger().handlers.clear()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_job_keys(stream: io.StringIO) -> None:
    structlog.get_logger("t").info("job filed", job_id=7, file="Ёлка 🎄.wav")
    (entry,) = lines(stream)
    assert entry["event"] == "job filed" and entry["job_id"] == 7 and entry["file"] == "Ёлка 🎄.wav"
    assert entry["level"] == "info" and "timestamp" in entry


def test_token_redacted_in_message_values_urls_and_nested(stream: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.info(f"using {TOKEN}", url=f"http://127.0.0.1/api/app/user?api_token={TOKEN}")
    log.info("nested", data={"form": [TOKEN, {"k": f"x{TOKEN}y"}]})
    log.info("unknown token in a url", url="http://h/api/separation/get?api_token=other-tok&hash=h")
    text = stream.getvalue()
    assert TOKEN not in text and "other-tok" not in text
    assert text.count("***") >= 4 and "hash=h" in text


def test_token_redacted_in_exceptions(stream: io.StringIO) -> None:
    log = structlog.get_logger("t")
    try:
        raise RuntimeError(f"request failed: POST /api?api_token={TOKEN}")
    except RuntimeError as exc:
        log.exception("boom")
        log.warning("as value", error=exc)
    text = stream.getvalue()
    assert TOKEN not in text and "RuntimeError" in text


def test_stdlib_loggers_are_redacted(stream: io.StringIO) -> None:
    logging.getLogger("some.library").warning("GET /api/app/user?api_token=%s 200", TOKEN)
    (entry,) = lines(stream)
    assert TOKEN not in json.dumps(entry) and "api_token=***" in str(entry["event"])


def test_console_format_is_readable() -> None:
    out = io.StringIO()
    configure_logging(fmt="console", stream=out)
    structlog.get_logger("t").info("hello", job_id=1)
    text = out.getvalue()
    logging.getLogger().handlers.clear()
    assert "hello" in text and "job_id=1" in text and not text.startswith("{")
