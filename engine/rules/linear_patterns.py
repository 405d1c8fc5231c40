"""Patterns from rule files, on Rust's regex crate: linear-time matching (Python's backtracking
`re` takes minutes on `^(a+)+$` against 41 characters), which refuses what it cannot run that
way (lookaround, backreferences, a pattern too large once compiled). Each pattern is first
written in that engine's syntax with the meaning Python's `re` gives it, so it accepts what it
accepted before, only in linear time."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import jsonschema_rs

# Rust's regex crate: linear-time matching, no lookaround or backreferences.
LINEAR = jsonschema_rs.RegexOptions()


# Python's classes for str patterns, in the linear engine's syntax (which reads `\d`, `\w` and
# `\s` as ECMA-262 does: ASCII only, and without \x1c-\x1f among the spaces).
_CLASSES = {"d": r"\p{Nd}", "w": r"\p{L}\p{N}_", "s": r"\p{White_Space}\x1c-\x1f"}
_NEGATED = {"D": "d", "W": "w", "S": "s"}


def python_dialect(pattern: str) -> str:
    """`pattern` as Python's `re` reads it, written for the linear engine: the classes above, `$`
    also before a final newline (unless multi-line), `\\Z` as `\\z`, and inside a class `[`, `&`
    and `~` literal (the engine reads them as nested classes and set operators)."""
    out: list[str] = []
    in_class = False
    multiline = "(?m" in pattern or re.search(r"\(\?[a-zA-Z]*m", pattern) is not None
    chars = iter(pattern)
    for char in chars:
        escaped = next(chars, None) if char == "\\" else None
        if escaped is not None:
            out.append(_escape(escaped, in_class))
            continue
        text, in_class = _unescaped(char, in_class, multiline, out)
        out.append(text)
    return "".join(out)


def _unescaped(char: str, in_class: bool, multiline: bool, out: list[str]) -> tuple[str, bool]:
    """A character outside an escape, as the linear engine reads it, and whether a class is open after it."""
    if in_class:
        if char == "]" and not _class_start(out):
            return char, False
        return ("\\" + char if char in "[&~" else char), True
    if char == "[":
        return char, True
    if char == "$" and not multiline:
        return r"(?:\n?\z)", False
    return char, False


def _escape(letter: str, in_class: bool) -> str:
    if letter in _CLASSES:
        return _CLASSES[letter] if in_class else f"[{_CLASSES[letter]}]"
    if letter == "D" and in_class:
        return r"\P{Nd}"
    if letter in _NEGATED:
        if in_class:  # the engine has no nested class to write "not a word character" inside one
            raise ValueError(f"\\{letter} inside [...] is not supported: write [^...] around the class instead")
        return f"[^{_CLASSES[_NEGATED[letter]]}]"
    return r"\z" if letter == "Z" and not in_class else "\\" + letter


def _class_start(out: list[str]) -> bool:
    # A `]` right after `[` or `[^` is a literal, in Python's `re` as in the linear engine.
    return bool(out) and (out[-1] == "[" or (out[-1] == "^" and len(out) > 1 and out[-2] == "["))


@lru_cache(maxsize=4096)
def pattern_search(pattern: str) -> Callable[[str], bool]:
    """`re.search(pattern, text)` on the linear-time engine, as a function of `text`;
    ValueError for a pattern that engine cannot run."""
    try:
        dialect = python_dialect(pattern)
    except ValueError as exc:
        raise ValueError(f"the pattern {pattern!r} cannot be used: {exc}") from None
    try:
        return jsonschema_rs.Draft202012Validator({"pattern": dialect}, pattern_options=LINEAR).is_valid
    except Exception:  # its own ValidationError: the schema `{"pattern": ...}` is not valid
        raise ValueError(f"the pattern {pattern!r} cannot be used: patterns run on a linear-time engine, "
                         f"without lookaround or backreferences") from None


def pattern_problem(pattern: object) -> str | None:
    """Why `pattern` cannot be used in a schema, or None."""
    if not isinstance(pattern, str):
        return None  # the meta-schema check says so
    try:
        pattern_search(pattern)
    except ValueError as exc:
        return str(exc)
    return None
