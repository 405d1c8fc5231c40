"""Problems found in configuration files, with the place each one points at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Mark:
    """A place in a file: 1-based line and column."""

    file: str
    line: int = 1
    col: int = 1


# The longest message shown: a message quotes the value it is about, and a value in a rule file
# may be a megabyte long. Its middle is left out, so what it says of the value stays readable.
MAX_MESSAGE = 2_000


def shortened(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    head, tail = message[:MAX_MESSAGE // 2], message[-MAX_MESSAGE // 4:]
    return f"{head} [... {len(message) - len(head) - len(tail)} characters left out ...] {tail}"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    severity: Severity = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", shortened(self.message))

    @classmethod
    def at(cls, mark: Mark, message: str, severity: Severity = "error") -> Problem:
        return cls(mark.file, mark.line, mark.col, message, severity)

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.message)


class ConfigError(Exception):
    """The configuration has errors; `problems` lists all of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        first = problems[0] if problems else None
        where = f"{first.file}:{first.line}:{first.col}: {first.message}" if first else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid configuration: {where}{more}")
