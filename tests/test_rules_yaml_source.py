"""engine.rules.yaml_source: YAML 1.2 plain scalars, positions, and the YAML 1.1 surprises refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.rules.json_schema import _has_tuple
from engine.rules.problems import Mark
from engine.rules.yaml_source import load_file, parse


def messages(text: str) -> list[str]:
    _, problems = parse(text, "f.yaml")
    return [f"{p.line}:{p.col}: {p.message}" for p in problems]


def test_positions_of_values_and_keys() -> None:
    doc, problems = parse("a:\n  b: 1\n  list:\n    - x\n    - {z: 2}\n", "f.yaml")
    assert problems == []
    assert doc.data == {"a": {"b": 1, "list": ["x", {"z": 2}]}}
    assert doc.mark(("a", "b")) == Mark("f.yaml", 2, 6)
    assert doc.mark(("a", "b"), key=True) == Mark("f.yaml", 2, 3)
    assert doc.mark(("a", "list", 0)) == Mark("f.yaml", 4, 7)
    assert doc.mark(("a", "list", 1, "z")) == Mark("f.yaml", 5, 11)
    # an absent path points at its nearest present parent
    assert doc.mark(("a", "list", 1, "missing")) == Mark("f.yaml", 5, 7)
    assert doc.mark(("nothing",)) == Mark("f.yaml", 1, 1)


@pytest.mark.parametrize("text, value", [
    ("v: true", True), ("v: False", False), ("v: null", None), ("v: ~", None), ("v:", None),
    ("v: 42", 42), ("v: -7", -7), ("v: 010", 10), ("v: 0o17", 15), ("v: 0x1F", 31),
    ("v: 1.5", 1.5), ("v: 1e3", 1000.0),
    ("v: hello", "hello"), ("v: '42'", "42"), ('v: "true"', "true"), ("v: 'yes'", "yes"),
    ('v: "2026-03-01"', "2026-03-01"), ("v: 09:00", "09:00"), ("v: 24h", "24h"), ("v: 1_000", "1_000"),
    ("v: |\n  two\n  lines\n", "two\nlines\n"),
])
def test_yaml_1_2_plain_scalars(text: str, value: object) -> None:
    doc, problems = parse(text, "f.yaml")
    assert problems == []
    assert doc.data == {"v": value}
    assert type(doc.data["v"]) is type(value)


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF"])
def test_yaml_1_1_booleans_are_refused_with_a_fix(word: str) -> None:
    doc, problems = parse(f"enabled: {word}\n", "f.yaml")
    assert [(p.line, p.col, p.message) for p in problems] == [
        (
            1,
            10,
            f"ambiguous value {word!r}: YAML 1.1 reads it as a boolean; write true or false, or quote it as a string",
        ),
    ]
    assert doc.data == {"enabled": word}  # kept as the string it is in YAML 1.2


@pytest.mark.parametrize("text", ["2026-03-01", "2026-03-01T10:00:00Z", "2026-03-01 10:00:00", "2026-3-1"])
def test_unquoted_dates_are_refused(text: str) -> None:
    assert messages(f"at: {text}\n") == [f'1:5: unquoted date {text!r}: quote it ("{text}") so it stays a string']


def test_ambiguous_keys_are_refused() -> None:
    assert messages("yes: 1\nnull: 2\n'on': 3\n") == [
        "1:1: ambiguous key 'yes': quote it",
        "2:1: ambiguous key 'null': quote it",
    ]


def test_duplicate_keys_report_the_second_with_the_first_line() -> None:
    doc, problems = parse("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n", "f.yaml")
    assert [f"{p.line}:{p.col}: {p.message}" for p in problems] == ["5:3: duplicate key 'c' (first at line 3)"]
    assert doc.data == {"a": 1, "b": {"c": 1, "d": 2}}  # the first is kept


def test_every_problem_is_reported_not_just_the_first() -> None:
    assert messages("a: yes\nb: 2026-01-01\na: 3\n") == [
        "1:4: ambiguous value 'yes': YAML 1.1 reads it as a boolean; write true or false, or quote it as a string",
        "2:4: unquoted date '2026-01-01': quote it (\"2026-01-01\") so it stays a string",
        "3:1: duplicate key 'a' (first at line 1)",
    ]


def test_anchors_and_aliases_are_allowed() -> None:
    doc, problems = parse("p: &p {id: 1}\nq: *p\n", "f.yaml")
    assert problems == [] and doc.data == {"p": {"id": 1}, "q": {"id": 1}}


@pytest.mark.parametrize("text, tag", [
    ("v: !!python/name:os.system x\n", "!!python/name:os.system"),
    ("v: !!python/object/apply:os.system [ls]\n", "!!python/object/apply:os.system"),
    ("v: !custom x\n", "!custom"),
    ("v: !custom {a: 1}\n", "!custom"),
])
def test_tags_are_refused(text: str, tag: str) -> None:
    assert messages(text) == [f"1:4: tags such as {tag!r} are not allowed"]


def test_merge_keys_are_refused() -> None:
    assert messages("base: &b {x: 1}\nother:\n  <<: *b\n  z: 2\n") == ["3:3: merge keys (<<) are not allowed"]


def test_syntax_errors_are_problems_not_exceptions() -> None:
    doc, problems = parse("a: [1, 2\nb: 3\n", "f.yaml")
    assert doc.data is None
    assert [(p.file, p.line, p.col) for p in problems] == [("f.yaml", 2, 2)]
    assert problems[0].message.startswith("YAML syntax error: ")
    assert messages("a:\n\tb: 1\n") == [
        "2:1: YAML syntax error: a tab in the indentation: indent with spaces, not tabs"
    ]
    assert messages("a:\n  b: 1\n \tc: 2\n") == [
        "3:2: YAML syntax error: a tab in the indentation: indent with spaces, not tabs"
    ]
    # A tab after the indentation is not about indenting.
    assert messages("a: [1,\t@]\n") == ["1:7: YAML syntax error: found character '\\t' that cannot start any token"]


def test_an_empty_document_is_none() -> None:
    doc, problems = parse("# only a comment\n", "f.yaml")
    assert (doc.data, problems) == (None, [])


def test_deep_nesting_is_bounded() -> None:
    text = "v: " + "[" * 70 + "]" * 70 + "\n"
    assert any("nesting deeper than 64 levels" in m for m in messages(text))


def test_load_file_reports_unreadable_files(tmp_path) -> None:
    _, problems = load_file(str(tmp_path / "missing.yaml"), "missing.yaml")
    assert [(p.file, p.line, p.col) for p in problems] == [("missing.yaml", 1, 1)]
    assert problems[0].message.startswith("cannot read file")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: Caf\xe9\n")
    _, problems = load_file(str(latin), "latin.yaml")
    assert [p.message for p in problems] == ["not UTF-8 text (byte 9)"]



def test_the_data_read_holds_no_tuple() -> None:
    # The loader checks shapes with plain=True (no walk looking for tuples) on what is read here.
    doc, _ = parse("a: [1, {b: [x, 2.5, null, true]}]\nc: &k {d: [[]]}\ne: *k\nf: 'q'\ng: |\n  block\n", "f.yaml")
    assert doc.data == {
        "a": [1, {"b": ["x", 2.5, None, True]}],
        "c": {"d": [[]]},
        "e": {"d": [[]]},
        "f": "q",
        "g": "block\n",
    }
    assert not _has_tuple(doc.data)
    root = Path(__file__).resolve().parent.parent
    for path in [
        *root.glob("*.yaml"),
        *root.glob("rules/*.yaml"),
        *root.glob("templates_map/*.yaml"),
        *root.glob("tests/**/*.yaml"),
    ]:
        assert not _has_tuple(load_file(str(path))[0].data), path
