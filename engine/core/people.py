"""A person given to the engine outside an event (`engine recipients import`), held to the rules the
ingest door applies to the people in events (`events.py`): an id of at most `MAX_ID` characters
without control characters, an email and a phone without control characters, an email and a time
zone of the formats event schemas check (`format: email`, `format: timezone`, with the same
checkers), and no control character, out-of-range integer or non-finite number anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..rules.event_schema import errors as schema_errors
from ..rules.event_schema import validator
from ..rules.json_schema import Checker
from .events import MAX_ID, id_problems, value_problems

# The fields the engine reads from a person (others are kept in the profile as they are).
PERSON_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "required": ["id", "email"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string", "minLength": 1},
        "timezone": {"type": "string", "format": "timezone"},
        "phone": {"type": "string"},
    },
}
ADDRESSES = ("email", "phone")  # what Courier's `to` carries, besides the id


@lru_cache(maxsize=1)
def _checker() -> Checker:
    return validator(PERSON_SCHEMA)


def person_problems(person: Any, where: str = "$") -> list[tuple[str, str]]:
    """Every problem of one person as (JSON path, message), in the door's words; [] when it may be stored."""
    if not isinstance(person, dict):
        return [(where, "a person must be a JSON object")]
    found = [(where + path[1:], message) for path, message in schema_errors(_checker(), person)]
    # The shape first (type, presence, format), then the limits of ids and addresses, then the text
    # anywhere: one message per field, the first that applies, as the door words it.
    for more in (_limit_problems(person, where), value_problems(person, where)):
        said = {path for path, _ in found}
        found += [problem for problem in more if problem[0] not in said]
    return found


def _limit_problems(person: dict[str, Any], where: str) -> list[tuple[str, str]]:
    """The problems of a person's id and addresses, as ids: length and control characters."""
    limits: list[tuple[str, str]] = []
    if isinstance(person.get("id"), str):
        limits += id_problems(f"{where}.id", person["id"], MAX_ID, "a recipient's id")
    for name in ADDRESSES:
        if isinstance(person.get(name), str):
            limits += id_problems(f"{where}.{name}", person[name], None, "a recipient's address")
    return limits
