"""Logging: structlog, JSON lines under a service manager, readable lines on a terminal.

Secrets never reach a log line. :func:`register_secret` adds a value (the API token) that
the :class:`Redactor` processor replaces wherever it appears: the event, any value, a
formatted exception, nested containers. It also masks ``api_token=...`` in any URL or query
string, whatever the value, so a token we were never told about is masked too. Standard
library loggers (httpx, uvicorn...) are routed through the same processors.

Every line carries ``timestamp`` in UTC, ISO 8601 with the zone (``...T06:10:00.123456Z``),
in JSON and on the console. Keys keep one meaning each: no processor here renames, merges
or drops a caller's key (``reason``, ``path``, ``hash`` stay what the call site passed).

A client retry is one line in our words: ``api call retried`` with ``attempt`` (the attempt
that failed, 1 for the first), ``wait_s`` and ``error``. :func:`configure_logging` installs
that as stamina's retry hook; a ``stamina.retry_scheduled`` line that still arrives (hooks
reset, stdlib instrumentation) is rephrased the same way, without the call's arguments.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import stamina.instrumentation
import structlog

MASK = "***"
_TOKEN_IN_URL = re.compile(r"(api_token[\"']?\s*[=:]\s*[\"']?)([^&\s\"',;}]+)")


class Redactor:
    """A structlog processor that masks registered secrets and ``api_token=`` values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:
            return  # masking 1-3 characters would shred ordinary text
        with self._lock:
            if secret not in self._secrets:
                # longest first, so a secret containing another is masked whole
                self._secrets = tuple(sorted((*self._secrets, secret), key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def redact_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _TOKEN_IN_URL.sub(lambda m: m.group(1) + MASK, text)

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        if isinstance(value, BaseException):
            return self.redact_text(repr(value))
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self.redact(value)
        return event_dict


REDACTOR = Redactor()


def register_secret(secret: str | None) -> None:
    """Mask this value in every log line from now on."""
    REDACTOR.add(secret)


LogFormat = Literal["auto", "json", "console"]

RETRY_EVENT = "api call retried"
_STAMINA_EVENT = "stamina.retry_scheduled"
_STAMINA_KEYS = (
    "callable",
    "args",
    "kwargs",
    "retry_num",
    "caused_by",
    "wait_for",
    "waited_so_far",
)
_retry_log = structlog.get_logger("daemon.mvsep")


def _error_text(error: object) -> str:
    if isinstance(error, BaseException):
        return str(error) or type(error).__name__
    return str(error)


def log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's on-retry hook: one line per scheduled retry, in our words."""
    _retry_log.warning(
        RETRY_EVENT,
        attempt=details.retry_num,
        wait_s=round(details.wait_for, 2),
        error=_error_text(details.caused_by),
    )


def rephrase_retries(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Turn stamina's own ``stamina.retry_scheduled`` (structlog or stdlib) into our line."""
    if event_dict.get("event") != _STAMINA_EVENT:
        return event_dict
    fields = {key: event_dict.pop(key) for key in _STAMINA_KEYS if key in event_dict}
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):  # stdlib hook: the details are record extras
        for key in _STAMINA_KEYS:
            fields.setdefault(key, getattr(record, f"stamina.{key}", None))
    event_dict["event"] = RETRY_EVENT
    event_dict["attempt"] = fields.get("retry_num")
    event_dict["wait_s"] = fields.get("wait_for")
    event_dict["error"] = _error_text(fields.get("caused_by"))
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        rephrase_retries,
        REDACTOR,  # after format_exc_info, so tracebacks are redacted too
    ]


def configure_logging(
    *,
    fmt: LogFormat = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Set up structlog and the stdlib root logger to write to ``stream`` (stderr)."""
    out = stream if stream is not None else sys.stderr
    for secret in secrets:
        register_secret(secret)
    use_json = fmt == "json" or (fmt == "auto" and not _isatty(out))
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=_isatty(out))
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; keep it at WARNING (it is redacted anyway).
    for noisy in ("httpx", "httpcore", "uvicorn.access", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    stamina.instrumentation.set_on_retry_hooks([log_retry])


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to ``sys.stderr`` as it is at that moment: a thread that logs
    after the stream it started with was swapped and closed (pytest's capture between a
    test and its teardown) writes to the current one instead of failing."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
