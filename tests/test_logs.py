"""Logging: JSON lines off a terminal, UTC timestamps, retries in our words, and the API
token never reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stamina
import stamina.instrumentation
import structlog
from stamina.instrumentation import LoggingOnRetryHook, StructlogOnRetryHook

from daemon.emulator.faults import Fault
from daemon.errors import ApiServerError
from daemon.logs import REDACTOR, configure_logging
from daemon.mvsep import MvsepClient

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


ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)")


def test_timestamps_are_utc_with_the_zone_in_json_and_console(stream: io.StringIO) -> None:
    structlog.get_logger("t").info("structlog line")
    logging.getLogger("some.library").warning("stdlib line")
    stamps = [str(entry["timestamp"]) for entry in lines(stream)]
    assert len(stamps) == 2 and all(ISO_UTC.fullmatch(s) for s in stamps), stamps
    then = datetime.fromisoformat(stamps[0].replace("Z", "+00:00"))
    assert then.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - then).total_seconds()) < 60
    console = io.StringIO()
    configure_logging(fmt="console", stream=console)
    structlog.get_logger("t").info("on a terminal")
    assert ISO_UTC.match(console.getvalue()), console.getvalue()


def test_reason_path_and_hash_keep_one_meaning_each(stream: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.warning("job failed", job_id=3, file="a.wav", reason="MVSEP said no", path="/in/a.wav",
                hash="20260101-abc")  # fmt: skip
    (entry,) = lines(stream)
    assert (entry["reason"], entry["path"], entry["hash"]) == (
        "MVSEP said no",
        "/in/a.wav",
        "20260101-abc",
    )
    console = io.StringIO()
    configure_logging(fmt="console", stream=console)
    log.warning("job failed", reason="r1", path="/p1", hash="h1")
    text = console.getvalue()
    assert "reason=r1" in text and "path=/p1" in text and "hash=h1" in text


# ------------------------------------------------------------------------- client retries


def retried_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [e for e in lines(out) if "retr" in str(e["event"]) or e.get("logger") == "stamina"]


@pytest.fixture
def default_hooks() -> Iterator[None]:
    yield
    stamina.instrumentation.set_on_retry_hooks(None)


def test_a_client_retry_is_one_line_in_our_words(
    stream: io.StringIO, make_emulator: Callable[..., Any], default_hooks: None
) -> None:
    """A real stamina retry: the MVSEP emulator answers 503 once, the client retries."""
    emulator = make_emulator()
    emulator.add_fault(Fault("http_5xx", "user", times=1, status=503))
    with httpx.Client() as http:
        MvsepClient(base_url=emulator.base_url, api_token=TOKEN, http=http).user()
    (entry,) = retried_lines(stream)
    assert entry["event"] == "api call retried" and entry["level"] == "warning"
    assert entry["attempt"] == 1 and isinstance(entry["wait_s"], float)
    assert "503" in str(entry["error"]) and "args" not in entry and "callable" not in entry
    assert TOKEN not in stream.getvalue()


@pytest.mark.parametrize("hook", [StructlogOnRetryHook, LoggingOnRetryHook])
def test_stamina_own_retry_lines_are_rephrased(
    stream: io.StringIO, default_hooks: None, hook: Any
) -> None:
    """Whichever stamina instrumentation is active, a user reads one line in our words."""
    stamina.instrumentation.set_on_retry_hooks([hook])
    for attempt in stamina.retry_context(on=ApiServerError, attempts=2, wait_initial=0.01,
                                         wait_max=0.01, wait_jitter=0):  # fmt: skip
        with attempt:
            if attempt.num == 1:
                raise ApiServerError(f"HTTP 502 from /api?api_token={TOKEN}")
    (entry,) = retried_lines(stream)
    assert entry["event"] == "api call retried" and entry["attempt"] == 1
    assert entry["wait_s"] == 0.01 and "502" in str(entry["error"])
    assert not {"args", "kwargs", "callable", "retry_num"} & entry.keys()
    assert TOKEN not in stream.getvalue()


def test_a_record_after_the_stream_was_swapped_and_closed_goes_to_the_current_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker thread that logs after a test's capture stream was closed (between a test
    and its teardown) writes to the stderr of that moment, not to the closed stream."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(fmt="json")
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    structlog.get_logger("t").info("after the swap", job_id=1)
    assert '"event": "after the swap"' in now.getvalue()
