"""Reading a request's body within a size limit, and parsing it as JSON that the rest of the
engine can hold (UTF-8, no NaN or Infinity, no lone surrogates, bounded nesting)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from ..jsontext import orjson_reads_exactly

MAX_DEPTH = 200  # levels of nesting a body may have (the store's encoder writes up to 254)


class BodyTooLarge(Exception):
    """The body is longer than the limit (as declared, or as it arrived)."""


class BodyIncomplete(Exception):
    """The client went away (or was cut off at the server's read deadline) before the body ended."""


class NotJSON(ValueError):
    """The body is not JSON the engine can hold; the message says why, and where."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; BodyTooLarge past `limit` bytes (without reading it all), BodyIncomplete."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyIncomplete from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The body's value; NotJSON says what is wrong with it."""
    # Whatever orjson reads is UTF-8 JSON without NaN, Infinity or lone surrogates; anything
    # else goes the slow way, which reads it or says what is wrong.
    try:
        value = orjson.loads(body) if orjson_reads_exactly(body) else _parse_slowly(body)
    except orjson.JSONDecodeError:
        value = _parse_slowly(body)
    if _deeper_than(value, MAX_DEPTH):
        raise NotJSON(f"the body is nested too deeply (more than {MAX_DEPTH} levels)")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def _parse_slowly(body: bytes) -> Any:
    value = _loads(_text(body))
    _refuse_lone_surrogates(value)
    return value


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJSON(f"the body is not UTF-8 (byte {exc.start})") from None


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise NotJSON(f"the body is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise NotJSON(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _refuse_lone_surrogates(value: Any) -> None:
    try:  # "\ud800" decodes to a lone surrogate, which nothing downstream can store or send
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotJSON("the body holds an escaped lone surrogate (such as \\ud800), which is not text") from None
    except RecursionError:
        raise NotJSON(f"the body is nested too deeply (more than {MAX_DEPTH} levels)") from None


def _no_constant(name: str) -> Any:
    raise NotJSON(f"the body is not JSON: {name} is not a JSON number")
