"""Rule expressions compiled once, in the sandbox, hardened (see harden)."""

from __future__ import annotations

import functools
from typing import Any

from ..budget import budget
from .environment import sandbox
from .errors import compiling
from .harden import expression_template, hardened
from .parse import parse


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@functools.lru_cache(maxsize=16_384)
def compile_template(source: str) -> Any:
    tree = parse(source, expression=False)
    with compiling(), budget():  # Jinja evaluates constant parts while it compiles
        return sandbox().from_string(hardened(tree))


@functools.lru_cache(maxsize=16_384)
def compile_expression(source: str) -> Any:
    expr = parse(source, expression=True)
    with compiling(), budget():
        return expression_template(expr)
