"""JSON text in and out, fast where orjson reads and writes exactly what the standard library does.

The store writes its payloads with `to_json` and reads them with `from_json`; the HTTP side reads
bodies through `orjson_reads_exactly` before trusting orjson with them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson  # several times the standard library's speed on the write path

_STR_KEYS = orjson.OPT_PASSTHROUGH_DATETIME
_ANY_KEYS = _STR_KEYS | orjson.OPT_NON_STR_KEYS  # 2.5x slower: asked for only when a key is not a str


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; what JSON has no type for (a datetime, say) is written as str().
    What orjson does not write (values nested deeper than 254 levels, integers beyond 64 bits)
    the standard library's encoder writes."""
    try:
        return orjson.dumps(value, default=str, option=_STR_KEYS)
    except orjson.JSONEncodeError:  # a key that is not a str (written as its text), or what only json writes
        pass
    try:
        return orjson.dumps(value, default=str, option=_ANY_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# every ASCII digit becomes "0", every other byte "\x01": a run of 19 digits is then a substring
_DIGITS_AS_ZERO = bytes(48 if chr(b).isdigit() and b < 128 else 1 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19


def orjson_reads_exactly(data: str | bytes) -> bool:
    """Whether orjson reads `data` as the standard library does: it reads an integer beyond 64
    bits as a float, so text holding 19 digits in a row (in a number, or just in a string) is
    left to the standard library. (A translate and a substring search: cheaper than a regular
    expression on a message.)"""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_ZERO)


def from_json(data: str | bytes) -> Any:
    if orjson_reads_exactly(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)  # nested deeper than orjson reads, long integers, or not JSON (then this raises)
