"""What a check of one rule returns: its problems, each at a path inside the rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from ..model import Window
from ..problems import Severity
from ..timeparse import parse_duration, parse_local_time

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """A problem of one rule. An error that does not `block` leaves the rule able to plan its
    example, whose own problems are then reported too (a template key missing from an
    environment must not hide them). A value that does not parse (`named` False) is told by
    its path in the file, as the same value is outside a rule, not by the rule's id."""

    path: tuple[Any, ...]
    message: str
    severity: Severity = "error"
    blocks: bool = True
    named: bool = True


# What a block check gives: the value it built (as far as it could) and its problems.
Checked = tuple[T, list[Finding]]


def reporter(found: list[Finding]) -> Callable[..., None]:
    """A function that adds a problem to `found`, for code that reports through a callback."""

    def report(path: tuple[Any, ...], message: str, severity: Severity = "error", blocks: bool = True) -> None:
        found.append(Finding(path, message, severity, blocks))

    return report


def duration(raw: Any) -> tuple[timedelta, str | None]:
    """The duration `raw` says, or 0 and why it says none."""
    try:
        return parse_duration(raw), None
    except ValueError as exc:
        return timedelta(0), str(exc)


def window(raw: Any) -> tuple[Window | None, str | None]:
    """The window `raw` says (`from`, `to`), or None and why it says none."""
    try:
        return Window(parse_local_time(raw["from"]), parse_local_time(raw["to"])), None
    except (ValueError, KeyError, TypeError) as exc:
        return None, str(exc)


def read_duration(path: tuple[Any, ...], raw: Any, found: list[Finding]) -> timedelta:
    """The duration at `path` in a rule; a problem in `found` when it is not one."""
    value, why = duration(raw)
    if why is not None:
        found.append(Finding(path, why, named=False))
    return value
