"""The parts of an expression that read no field, evaluated at validation under the render's own
bounds (`['x' * 10000] * 10000` behind a condition no example meets), and the turns of loops over
such parts counted, nested ones multiplied: what fails here fails with any data."""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from ..budget import MAX_STEPS, budget
from .errors import ExpressionError, bounded, reported
from .harden import copied, expression_template
from .tree import constant
from .values import plain


def check_constants(tree: nodes.Node) -> None:
    """Raise ExpressionError when a part of `tree` that reads nothing breaks a bound."""
    with reported():
        try:
            with budget():
                _check(copied(tree), 1)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply") from None


def _check(node: nodes.Node, turns: int) -> None:
    if isinstance(node, nodes.For):
        _loop(node, turns)
    elif isinstance(node, nodes.Output):
        _output(node, turns)
    elif isinstance(node, nodes.Expr) and constant(node):
        _value(node)
    else:  # a statement, or an expression that reads a field: its parts may not
        _check_all(node.iter_child_nodes(), turns)


def _check_all(children: Any, turns: int) -> None:
    for child in children:
        _check(child, turns)


def _loop(node: nodes.For, turns: int) -> None:
    if isinstance(node.iter, nodes.Expr) and constant(node.iter):
        turns = _turns(node.iter, turns)
    else:
        _check(node.iter, turns)
    _check_all((*node.body, *([node.test] if node.test else []), *node.else_), turns)


def _turns(iterable: nodes.Expr, turns: int) -> int:
    """The turns of a loop over `iterable`, within loops that turn `turns` times."""
    found = _value(iterable)
    turns *= len(found) if hasattr(found, "__len__") else 1
    if turns >= MAX_STEPS:
        raise ExpressionError(f"its loops would turn more than {MAX_STEPS} times ({turns})")
    return turns


def _output(node: nodes.Output, turns: int) -> None:
    for part in node.nodes:
        if not constant(part):
            _check(part, turns)
        elif not isinstance(part, (nodes.Const, nodes.TemplateData)):
            bounded(plain(_value(part)))  # as a lone value is given, or refused


def _value(node: nodes.Expr) -> Any:
    if isinstance(node, (nodes.Const, nodes.Name, nodes.TemplateData)):
        return node.as_const() if isinstance(node, nodes.Const) else None
    return expression_template(node)()
