"""Rendering a data value and evaluating a bare expression, each within a budget."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ..budget import budget
from .compiling import compile_expression, compile_template, is_template
from .errors import bounded, reported
from .lookups import Renderer
from .lookups import renderer as plain_renderer
from .values import plain


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render one data value: a template string is rendered, anything else returned as is."""
    if not is_template(value):
        return value
    with reported():
        run = renderer(value)  # compiled outside the budget, as it is cached
        with budget():
            return run(context)


def render_data(data: Mapping[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Every value of `data` rendered (see render), all within one budget."""
    with reported(), budget():
        return {name: renderer(value)(context) if is_template(value) else value for name, value in data.items()}


def evaluate(source: str, context: dict[str, Any]) -> Any:
    """Evaluate a bare expression (a condition, a template selector)."""
    with reported():
        expression = compile_expression(source)
        with budget():
            return bounded(plain(expression(**context)))


@functools.lru_cache(maxsize=16_384)
def renderer(source: str) -> Renderer:
    """What renders the template `source` within the current budget: without Jinja where it
    reads plain fields (see lookups), else its compiled template (which checks the source)."""
    with_jinja = functools.partial(_render, compile_template(source))
    return plain_renderer(source, with_jinja) or with_jinja


def _render(template: Any, context: dict[str, Any]) -> Any:
    return bounded(template.render(context))
