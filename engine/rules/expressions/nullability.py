"""How the value of a data field that is one lone expression can be null, for `engine validate`
to hold against the fields the payload schema requires."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from jinja2 import nodes

from .parse import parse
from .tree import DEFAULT_FILTERS, chain, keyword

Path = tuple[str, ...]
Sources = tuple[str | None, tuple[Path, ...]]


@dataclass(frozen=True)
class Nullable:
    """How the value of a lone expression can be null: `why` when it can whatever the data
    (`| default(none)`), `paths` whose own value it gives as is (null if the schema allows)."""

    why: str | None
    paths: tuple[Path, ...]


@functools.lru_cache(maxsize=16_384)
def nullable(source: str, *, expression: bool) -> Nullable | None:
    """How a data value that is one lone expression (`{{ ... }}`) can render null; None when it
    cannot, or is more than one expression (text around a null writes 'None')."""
    tree = parse(source, expression=expression)
    lone = tree if expression else _lone_output(tree)
    why, paths = _null_sources(lone) if lone is not None else (None, ())
    return Nullable(why, paths) if why or paths else None


def _lone_output(tree: nodes.Template) -> nodes.Node | None:
    output = tree.body[0] if len(tree.body) == 1 else None
    return output.nodes[0] if isinstance(output, nodes.Output) and len(output.nodes) == 1 else None


def _null_sources(node: nodes.Node) -> Sources:
    if isinstance(node, nodes.Const) and node.value is None:
        return "it is none", ()
    if isinstance(node, nodes.Filter) and node.name in DEFAULT_FILTERS:
        return _default_sources(node)
    if isinstance(node, nodes.CondExpr):
        return _branch_sources(node)
    if isinstance(node, (nodes.And, nodes.Or)):
        return _either(node.left, node.right)
    found = chain(node)
    return (None, (found[1],)) if found else (None, ())


def _default_sources(node: nodes.Filter) -> Sources:
    fallback = node.args[0] if node.args else keyword(node, "default_value")
    if isinstance(fallback, nodes.Const) and fallback.value is None:
        return f"`| {node.name}(none)` gives null when the field is missing", ()
    return _either(node.node, fallback)


def _branch_sources(node: nodes.CondExpr) -> Sources:
    if node.expr2 is None:
        return "an `if` without `else` gives nothing when its test is false", ()
    return _either(node.expr1, node.expr2)


def _either(*choices: nodes.Node | None) -> Sources:
    """Null for the first reason any of `choices` gives, or as any of their paths is."""
    found = [_null_sources(choice) for choice in choices if choice is not None]
    return next((why for why, _ in found if why), None), tuple(path for _, paths in found for path in paths)
