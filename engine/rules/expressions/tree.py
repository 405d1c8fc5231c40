"""Walking the tree Jinja parses an expression into: the questions every static check asks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import nodes

from .environment import GLOBALS

DEFAULT_FILTERS = ("default", "d")
_CONTEXT_NODES = (nodes.ContextReference, nodes.DerivedContextReference)


def find(tree: nodes.Node, kinds: Any) -> Iterator[Any]:
    """The nodes of `kinds` in `tree`, `tree` itself included (Node.find_all leaves it out: it
    is the whole of a bare expression such as `status`)."""
    if isinstance(tree, kinds):
        yield tree
    yield from tree.find_all(kinds)


def constant(node: nodes.Node) -> bool:
    """Whether `node` is an expression that reads nothing but the sandbox's globals."""
    if not isinstance(node, nodes.Expr) or isinstance(node, _CONTEXT_NODES):
        return False
    reads_globals = all(name.ctx == "load" and name.name in GLOBALS for name in find(node, nodes.Name))
    return reads_globals and not any(find(node, (*_CONTEXT_NODES, nodes.InternalName)))


def chain(node: nodes.Node) -> tuple[nodes.Name, tuple[str, ...]] | None:
    """The name and dotted path of `a.b['c']`; None for anything else."""
    steps: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        step = node.attr if isinstance(node, nodes.Getattr) else const_string(node.arg)
        if step is None:
            return None
        steps.append(step)
        node = node.node
    if not isinstance(node, nodes.Name) or node.ctx != "load":
        return None
    return node, (node.name, *reversed(steps))


def const_string(node: nodes.Node) -> str | None:
    """The string `node` is when it is a string constant."""
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def keyword(node: nodes.Filter | nodes.Call, name: str) -> nodes.Expr | None:
    """The value of the keyword argument `name` of a filter or call, if given."""
    return next((k.value for k in node.kwargs if k.key == name), None)


def parent_map(tree: nodes.Node) -> dict[int, nodes.Node]:
    """Each node's parent, by the child's id."""
    parents: dict[int, nodes.Node] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        parents.update((id(child), node) for child in node.iter_child_nodes())
        stack.extend(node.iter_child_nodes())
    return parents
