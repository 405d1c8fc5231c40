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


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    severity: Severity = "error"

    @classmethod
    def at(cls, mark: Mark, message: str, severity: Severity = "error") -> "Problem":
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
