"""The store's JSON text: what orjson writes with str keys only is what it writes with any keys,
and what only the standard library writes comes out as it writes it."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.jsontext import to_json


class Kind(enum.StrEnum):
    A = "a"


CASES: list[Any] = [
    {"to": {"user_id": "u", "email": "e@x"}, "template": "T", "data": {"n": 1.5, "ok": True, "x": None},
     "channels": ["email"]},
    {2: "int key", None: "none key", True: "bool key", Kind.A: "enum key"},
    {"nested": {2: [3, {"d": datetime(2026, 1, 2, tzinfo=UTC)}]}},
    {"1": "str", 1: "int"},  # both written: the keys a reader sees twice
    {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "set": {1}},
]


@pytest.mark.parametrize("value", CASES)
def test_json_text_is_what_orjson_writes_with_any_keys(value: Any) -> None:
    options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    assert to_json(value) == orjson.dumps(value, default=str, option=options)


@pytest.mark.parametrize("value", [{"big": 2 ** 70}, {1: 2 ** 70}, {"deep": json.loads("[" * 300 + "]" * 300)}])
def test_what_orjson_does_not_write_the_standard_library_does(value: Any) -> None:
    assert to_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
