"""`engine recipients import FILE` holds each person to the ingest door's rules (the very checks, and
the very words, the door gives for the people in events), and refuses a bad file whole: every
problem named by line (JSON Lines) or index (a JSON list) and JSON path, nothing imported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.core.events import EventRejected, parse_event
from engine.core.people import person_problems

from .support import person

GOOD = {"id": "usr_1", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/London"}

# (field, value): each refused at the door when a person in an event holds it
REFUSED = [
    ("id", "u" * 201), ("id", "usr\x01"), ("id", ""), ("id", 42),
    ("email", "no-at-sign"), ("email", "ada@example.com\r\nBcc: x@evil.test"), ("email", 7),
    ("timezone", "Mars/Olympus"), ("timezone", "Europe"), ("timezone", "Europe/" + "x" * 70),
    ("phone", "+44\x00"), ("name", "Ada\x00"), ("nickname", float("nan")), ("points", 2**60),
]


def door(config: Any, who: dict[str, Any]) -> list[tuple[str, str]]:
    """The door's problems with this person as the user of a registration, under `$` as the person."""
    event = {"id": "evt_1", "type": "user.registered", "occurred_at": "2026-03-01T10:00:00Z",
             "data": {"user": {**who, "role": "client"}, "verification_url": "https://estuary.app/verify"}}
    try:
        parse_event(event, config)
    except EventRejected as exc:
        return [("$" + path.removeprefix("$.data.user"), message) for path, message in exc.problems]
    return []


@pytest.mark.parametrize(("field", "value"), REFUSED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REFUSED)])
def test_a_person_is_refused_as_the_door_refuses_them_in_an_event(config: Any, field: str, value: Any) -> None:
    who = {**GOOD, field: value}
    found = person_problems(who)
    assert found and found == door(config, who), (found, door(config, who))


def test_a_good_person_passes_both(config: Any) -> None:
    assert person_problems(GOOD) == [] and door(config, GOOD) == []
    assert person_problems({"id": "usr_2", "email": "b@example.com"}) == []  # name and time zone may be left out


def test_a_bad_file_is_refused_whole_each_problem_by_line_and_path(cli: Any, project: Path, tmp_path: Path,  # noqa: F811
                                                                    make_runtime: Any) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    before = tmp_path / "before.jsonl"
    before.write_text(json.dumps(person("usr_kept")) + "\n")
    assert cli("recipients", "import", str(before), ENGINE_DATABASE_URL=url)[0] == 0
    store = make_runtime(url).store
    kept = store.recipient("usr_kept")

    bad = tmp_path / "bad.jsonl"
    lines = [person("usr_new"), {**person("usr_kept"), "name": "Changed"}, {**GOOD, "id": "u" * 201},
             {**GOOD, "id": "usr_tz", "timezone": "Mars/Olympus"}, {"id": "usr_noemail", "name": "X"}, [1],
             {**GOOD, "id": "usr_new", "email": "Ada <ada@example.com>\n"}]
    bad.write_text("\n".join(json.dumps(line) for line in lines[:3]) + "\n\n" +
                   "\n".join(json.dumps(line) for line in lines[3:]) + "\n")
    code, out, err = cli("recipients", "import", str(bad), ENGINE_DATABASE_URL=url)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "Error: " + f"{bad}:3: $.id: is 201 characters long; a recipient's id may have at most 200",
        f"{bad}:5: $.timezone: 'Mars/Olympus' is not a 'timezone'",
        f"{bad}:6: $: 'email' is a required property",
        f"{bad}:7: $: a person must be a JSON object",
        f"{bad}:8: $.email: holds the control character U+000A; a recipient's address may hold none",
        f"{bad}:8: $.id: 'usr_new' is given again (first at {bad}:1): one entry per person",
        f"{bad}: 6 problem(s): nothing imported",
    ]
    assert store.recipient("usr_new") is None and store.recipient("usr_tz") is None  # nothing of it imported
    assert store.recipient("usr_kept") == kept  # nor anything updated


def test_a_bad_json_list_names_each_index(cli: Any, project: Path, tmp_path: Path, make_runtime: Any) -> None:  # noqa: F811
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    as_list = tmp_path / "people.json"
    as_list.write_text(json.dumps([GOOD, {**GOOD, "id": "usr_2", "email": "nope"}], indent=2))
    code, _, err = cli("recipients", "import", str(as_list), ENGINE_DATABASE_URL=url)
    assert code == 1
    assert f"{as_list}: $[1].email: 'nope' is not a 'email'" in err and "1 problem(s): nothing imported" in err
    assert make_runtime(url).store.recipient("usr_1") is None


@pytest.mark.parametrize(("content", "message"), [
    (b'{"id": "usr_1", "email": "a@example.com"}\n{not json\n',
     "bad.jsonl:2: not JSON: Expecting property name enclosed in double quotes (column 2): nothing imported"),
    (b'[{"id": "usr_1",\n "email": }]', "bad.jsonl: not JSON: Expecting value (line 2 column 11): nothing imported"),
    (b'{"id": "usr_\xff", "email": "a@example.com"}\n', "bad.jsonl: not UTF-8 text (byte 12): nothing imported"),
    (b"[" * 100_000, "bad.jsonl: nested too deeply: nothing imported"),
])
def test_a_file_that_cannot_be_read_says_where(cli: Any, project: Path, tmp_path: Path, content: bytes,  # noqa: F811
                                               message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code, _, err = cli("recipients", "import", str(bad), ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'engine.db'}")
    assert code == 1 and err.strip() == f"Error: {tmp_path}/{message}", err
