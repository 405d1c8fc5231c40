"""The log: plain text (the default) or one JSON object per line (`ENGINE_LOG_FORMAT=json`).

A JSON line holds `time` (ISO 8601, UTC), `level`, `logger`, `message`, and the ids a record
carries as fields of their own (`IDS`: the notification, its row id, the event, the recipient,
the HTTP request...), so that a log pipeline can filter on them. Ids name things; nothing
personal (addresses, names, template data) is ever passed as a field, and the engine's own
messages carry none either (tests/reliability/test_pii_logs.py).

The id of the HTTP request being answered is in a context variable (set by
`engine.http.request_id`), so every line logged while answering it carries it, whichever
module logs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from .settings import Settings

# What a record may carry as `extra=` and a JSON line shows as fields (in this order).
IDS = ("notification", "notification_id", "event_id", "recipient_id", "request_id", "courier_request_id",
       "outcome", "attempt")

_IDS = frozenset(IDS)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries that log every request or task at INFO (httpx a line per Courier request, Huey two per
# delivery): below DEBUG, only their warnings, so that a send is one line of the engine's own.
CHATTY = ("httpx", "httpcore", "huey")

request_id: ContextVar[str | None] = ContextVar("engine_request_id", default=None)


class _RequestId(logging.Filter):
    """Puts the id of the HTTP request being answered (if any) on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """The plain format; a line logged while answering a request ends with its id."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is the `exception` field)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{key: value for key in IDS if (value := getattr(record, key, None)) is not None},
            **self._traces(record),
        }
        try:
            return orjson.dumps(out, default=str).decode()
        except TypeError:  # a lone surrogate (an undecodable byte in a file name, say): escaped, not lost
            return json.dumps(out, default=str)


    def _traces(self, record: logging.LogRecord) -> dict[str, str]:
        """The record's traceback (`exception`) and stack (`stack`), where it has them."""
        out = {}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out


def iso_time(created: float) -> str:
    """`2026-03-02T12:00:00.123Z`."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def setup(settings: Settings, stream: Any = None) -> logging.Handler:
    """Log to stderr (or `stream`) at `settings.log_level` in `settings.log_format`, replacing
    whatever handlers the root logger had; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(_RequestId())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = logging.getLevelName(settings.log_level)
    root.setLevel(level)
    _quiet_libraries(level)
    return handler


def _quiet_libraries(level: int) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else logging.WARNING)
    # The Courier SDK logs whole requests (addresses, names, template data) at DEBUG: never let it.
    logging.getLogger("courier").setLevel(max(logging.INFO, level))


def ids(**values: Any) -> Mapping[str, Any]:
    """`extra=` for a record: the ids given (None left out), e.g. `log.info(..., extra=ids(notification=n))`."""
    if not _IDS.issuperset(values):
        raise TypeError(f"not a log field: {sorted(set(values) - _IDS)}")
    return {k: v for k, v in values.items() if v is not None}
