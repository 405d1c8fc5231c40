"""Parsing a rule expression and refusing, before it ever runs, what the sandbox would refuse
on some branch only: statements other than if/for, recursive loops, names that start with an
underscore (also when built from constants or given to attr, map or str.format), generator
internals, calls that change a value, and sums of anything but numbers.

What is refused here is refused by `engine validate` and by the renderer.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any

from jinja2 import nodes
from jinja2 import sandbox as sandbox_module
from jinja2.parser import Parser

from ..budget import budget
from .environment import sandbox
from .errors import ExpressionError, compiling
from .harden import copied, expression_template
from .tree import constant, find, keyword

MAX_SOURCE = 2_000
# Statements a rule expression may use; everything else (macro, call, include, set...) is refused.
_ALLOWED_STATEMENTS = (nodes.Template, nodes.Output, nodes.If, nodes.For)
# The keyword a rule author wrote, for the node types whose names differ from it.
_STATEMENT_NAMES = {"Assign": "set", "AssignBlock": "set", "CallBlock": "call", "FromImport": "import",
                    "FilterBlock": "filter", "ExprStmt": "do", "Scope": "with",
                    "ScopedEvalContextModifier": "autoescape"}
# Filters that read an attribute named by a string argument (its position, its keyword): the
# sandbox refuses an unsafe name only when the filter runs, on whichever branch reaches it.
_ATTRIBUTE_FILTERS = {"attr": (0, "name"), "map": (None, "attribute"), "selectattr": (0, "attribute"),
                      "rejectattr": (0, "attribute"), "sort": (2, "attribute"), "groupby": (0, "attribute"),
                      "sum": (0, "attribute"), "unique": (1, "attribute"), "min": (1, "attribute"),
                      "max": (1, "attribute"), "join": (1, "attribute"), "dictsort": (None, None)}
_UNSAFE_ATTRIBUTES = frozenset(sandbox_module.UNSAFE_GENERATOR_ATTRIBUTES | sandbox_module.UNSAFE_COROUTINE_ATTRIBUTES
                               | sandbox_module.UNSAFE_ASYNC_GENERATOR_ATTRIBUTES)
_FIELD_STEP = re.compile(r"[.\[]\s*([^.\[\]]*)")
_MUTABLE_SAMPLES: tuple[Any, ...] = ([], {}, set())


def parse(source: str, *, expression: bool) -> Any:
    """Parse and audit: the tree of a template (a nodes.Template) or of a bare expression (a
    nodes.Expr)."""
    check_source(source)
    with compiling():
        tree = _parse_expression(source) if expression else sandbox().parse(source)
    audit(tree)
    return tree


def check_source(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"expression longer than {MAX_SOURCE} characters")


def _parse_expression(source: str) -> nodes.Expr:
    parser = Parser(sandbox(), source, state="variable")  # as Environment.compile_expression parses
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise ExpressionError("does not compile: chunk after expression")
    expr.set_environment(sandbox())
    return expr


def audit(tree: nodes.Node) -> None:
    _check_statements(tree)
    _check_names(tree)
    _check_unsafe(tree)
    _check_calls(tree)
    _check_sums(tree)


def _check_statements(tree: nodes.Node) -> None:
    for node in find(tree, nodes.Stmt):
        if not isinstance(node, _ALLOWED_STATEMENTS):
            raise ExpressionError(f"the statement '{_statement_name(node)}' is not allowed in rule expressions")
        if isinstance(node, nodes.For) and node.recursive:  # a recursive loop turns outside the budget's count
            raise ExpressionError("a recursive loop is not allowed in rule expressions")


def _statement_name(node: nodes.Node) -> str:
    return _STATEMENT_NAMES.get(type(node).__name__, type(node).__name__.lower())


def _check_names(tree: nodes.Node) -> None:
    for name in _attribute_names(tree):
        if any(part.startswith("_") for part in name.split(".")):
            raise ExpressionError(f"'{name}': names starting with an underscore are not allowed")


def _check_unsafe(tree: nodes.Node) -> None:
    for node in find(tree, nodes.Getattr):
        if node.attr in _UNSAFE_ATTRIBUTES:
            raise ExpressionError(f"'{node.attr}' is refused by the sandbox")


def _check_calls(tree: nodes.Node) -> None:
    for node in find(tree, nodes.Call):
        if isinstance(node.node, nodes.Getattr) and _mutates(node.node.attr):
            raise ExpressionError(f"'{node.node.attr}()' changes a value, which rule expressions cannot do")


def _check_sums(tree: nodes.Node) -> None:
    for node in find(tree, nodes.Filter):
        if node.name == "sum" and not _a_number(_filter_argument(node, 1, "start")):
            raise ExpressionError("the sum filter adds numbers: its start must be a number")


def _mutates(name: str) -> bool:
    return any(sandbox_module.modifies_known_mutable(sample, name) for sample in _MUTABLE_SAMPLES)


def _a_number(node: nodes.Expr | None) -> bool:
    if isinstance(node, nodes.Neg):
        node = node.node
    return node is None or (isinstance(node, nodes.Const) and isinstance(node.value, (int, float)))


def _attribute_names(tree: nodes.Node) -> Iterator[str]:
    """Every attribute name an expression asks for, in any branch: `x.name`, `x['name']`, the
    names given to attr, map(attribute=...) and their kind, and the fields of a str.format
    pattern. A name made of constants (`'__cla' ~ 'ss__'`) is evaluated first."""
    yield from (n.attr if isinstance(n, nodes.Getattr) else n.name for n in find(tree, (nodes.Getattr, nodes.Name)))
    for item in find(tree, nodes.Getitem):
        yield from _strings(item.arg)
    for node in find(tree, nodes.Filter):
        yield from _filter_names(node)
    for call in find(tree, nodes.Call):
        yield from _format_names(call)


def _filter_names(node: nodes.Filter) -> Iterator[str]:
    index, name = _ATTRIBUTE_FILTERS.get(node.name, (None, None))
    argument = None if name is None else _filter_argument(node, index, name)
    yield from _strings(argument) if argument is not None else ()


def _filter_argument(node: nodes.Filter, index: int | None, name: str) -> nodes.Expr | None:
    """The argument of a filter given by keyword `name` or at position `index` (None: keyword only)."""
    given = keyword(node, name)
    if given is not None or index is None:
        return given
    return node.args[index] if len(node.args) > index else None


def _format_names(call: nodes.Call) -> Iterator[str]:
    called = call.node
    if isinstance(called, nodes.Getattr) and called.attr in ("format", "format_map"):
        for pattern in _strings(called.node):
            yield from _format_fields(pattern)


def _strings(node: nodes.Node) -> Iterator[str]:
    """The string `node` gives when it reads nothing (a constant, or constants joined)."""
    value = node.value if isinstance(node, nodes.Const) else _joined_constant(node)
    if isinstance(value, str):
        yield value


def _joined_constant(node: nodes.Node) -> Any:
    if not (isinstance(node, (nodes.Concat, nodes.Add)) and constant(node)):
        return None
    try:
        with budget():
            return expression_template(copied(node))()
    except Exception:  # noqa: BLE001 - a constant that fails to evaluate is refused by the constant checks
        return None


def _format_fields(pattern: str) -> Iterator[str]:
    """The attribute and item names in the fields of a str.format pattern (`{0.__class__}`)."""
    for _, field, spec, _ in _format_parsed(pattern):
        for part in filter(None, (field, spec)):
            yield from (m.group(1).strip("'\"") for m in _FIELD_STEP.finditer(part))


def _format_parsed(pattern: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(pattern))
    except ValueError:
        return []
