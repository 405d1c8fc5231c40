"""The fields an expression reads, and how many steps of each read a guard proves present.

`engine validate` checks each read against the event's schema: a field the schema makes optional
may be read only where a guard (`x.y is defined`, `'y' in x`, `| default(...)`) covers it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes

from .compiling import compile_expression, compile_template
from .constants import check_constants
from .environment import GLOBALS
from .parse import parse
from .tree import DEFAULT_FILTERS, chain, const_string, find, parent_map

Path = tuple[str, ...]
Proofs = frozenset[Path]
_NONE: Proofs = frozenset()
_INDEX = 0  # a step that reads `items[N]`


@dataclass(frozen=True)
class Reference:
    """A dotted read from the context: ("booking", "service", "name"); `index` marks items[N]."""

    path: Path
    index: bool = False
    # How many leading steps a guard proves present where it is read (`x.y is defined`, `'y' in
    # x`, on the branch they guard; `x.y | default(...)` and `x.y is defined` themselves).
    defined: int = 0
    lenient: bool = False  # its last step may be missing: it is what `default` or `is defined` reads

    def optional_ok(self, step: int) -> bool:
        """Whether step `step` (0-based) of the path may be missing from an event here."""
        return step < self.defined or (self.lenient and step == len(self.path) - 1)


@functools.lru_cache(maxsize=16_384)
def analyse(source: str, *, expression: bool) -> tuple[Reference, ...]:
    """The context fields an expression reads; raises ExpressionError for anything refused,
    including a part that reads no field and breaks a bound when evaluated (see constants)."""
    tree = parse(source, expression=expression)
    compile_expression(source) if expression else compile_template(source)
    refs = _references(tree)
    check_constants(tree)
    return refs


def _references(tree: nodes.Node) -> tuple[Reference, ...]:
    local, parents, guarded = _loop_names(tree), parent_map(tree), _Guards(tree).proven
    names = [n for n in find(tree, nodes.Name) if n.ctx == "load" and id(n) not in local and n.name not in GLOBALS]
    return tuple(Reference(*_read_path(name, parents), *guarded.get(id(name), (0, False))) for name in names)


def _read_path(name: nodes.Name, parents: dict[int, nodes.Node]) -> tuple[Path, bool]:
    """The path read from `name` up the tree, while each step is a constant; whether it is indexed."""
    path, index = [name.name], False
    node: nodes.Node = name
    while (step := _step(parents.get(id(node)), node, len(path))) is not None:
        index = index or step == _INDEX
        path += [step] if isinstance(step, str) else []
        node = parents[id(node)]
    return tuple(path), index


def _step(parent: nodes.Node | None, node: nodes.Node, length: int) -> str | int | None:
    """What `parent` reads of `node`: a name, _INDEX for `items[N]` right after the first name,
    None for anything else."""
    if isinstance(parent, nodes.Getattr) and parent.node is node:
        return parent.attr
    if not (isinstance(parent, nodes.Getitem) and parent.node is node and isinstance(parent.arg, nodes.Const)):
        return None
    key = parent.arg.value
    return key if isinstance(key, str) else _INDEX if isinstance(key, int) and length == 1 else None


def _loop_names(tree: nodes.Node) -> set[int]:
    """The names (node ids) that read what a `for` binds, not the context: its targets in its
    `if` and body, and `loop` in its body. As Jinja scopes them: neither is seen by the iterable,
    the `else` or anything after the loop, where the same name reads the context again."""
    found: set[int] = set()
    stack: list[tuple[nodes.Node, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        node, bound = stack.pop()
        stack += _scoped(node, bound, found)
    return found


def _scoped(node: nodes.Node, bound: frozenset[str], found: set[int]) -> list[tuple[nodes.Node, frozenset[str]]]:
    """The children of `node`, each with the names bound where it is; a name that reads one of
    `bound` goes into `found`."""
    if isinstance(node, nodes.Name):
        found.update([id(node)] if node.ctx == "load" and node.name in bound else [])
        return []
    if isinstance(node, nodes.For):
        return _loop_scopes(node, bound)
    return [(child, bound) for child in node.iter_child_nodes()]


def _loop_scopes(node: nodes.For, bound: frozenset[str]) -> list[tuple[nodes.Node, frozenset[str]]]:
    targets = bound | {n.name for n in find(node.target, nodes.Name)}
    tests = [(node.test, targets)] if node.test is not None else []
    return [(node.iter, bound), *((child, bound) for child in node.else_), *tests,
            *((child, targets | {"loop"}) for child in node.body)]


class _Guards:
    """For each name a chain of reads starts at, how many of its steps are proven present.

    StrictUndefined makes every read of a missing field fail, `if x.y` included; what may read
    one is `x.y | default(...)` and `x.y is defined`, and the branch a test guards: the `then` of
    `x.y is defined` (or `'y' in x`), the `else` of `x.y is not defined`, the right of `and`
    after a proof and of `or` after a disproof. One walk, each node visited once."""

    def __init__(self, tree: nodes.Node) -> None:
        self.proven: dict[int, tuple[int, bool]] = {}
        self.visit(tree, _NONE)

    def visit(self, node: nodes.Node, proven: Proofs) -> None:
        if isinstance(node, (nodes.CondExpr, nodes.If)):
            self.branches(node, proven)
        elif isinstance(node, (nodes.And, nodes.Or)):
            self.logic(node, proven)
        else:
            self.read(node, proven)
            for child in node.iter_child_nodes():
                self.visit(child, proven)

    def branches(self, node: nodes.CondExpr | nodes.If, proven: Proofs) -> None:
        self.visit(node.test, proven)
        for branch, more in zip(_branches(node), _proofs(node.test), strict=True):
            for child in branch:
                self.visit(child, proven | more)

    def logic(self, node: nodes.And | nodes.Or, proven: Proofs) -> None:
        self.visit(node.left, proven)
        yes, no = _proofs(node.left)
        self.visit(node.right, proven | (yes if isinstance(node, nodes.And) else no))

    def read(self, node: nodes.Node, proven: Proofs) -> None:
        operand = _lenient_operand(node)
        found = chain(operand if operand is not None else node)
        if found is not None:
            known = max((len(p) for p in proven if found[1][:len(p)] == p), default=0)
            self.proven.setdefault(id(found[0]), (known, operand is not None))


def _branches(node: nodes.CondExpr | nodes.If) -> tuple[list[Any], list[Any]]:
    if isinstance(node, nodes.CondExpr):
        return [node.expr1], [node.expr2] if node.expr2 is not None else []
    return node.body, [*node.elif_, *node.else_]


def _lenient_operand(node: nodes.Node) -> nodes.Node | None:
    """What `x | default(...)` and `x is defined` read, which may be missing; None for other nodes."""
    if isinstance(node, nodes.Filter) and node.name in DEFAULT_FILTERS:
        return node.node
    return node.node if isinstance(node, nodes.Test) and node.name in ("defined", "undefined") else None


def _proofs(test: nodes.Node) -> tuple[Proofs, Proofs]:
    """The paths proven present when `test` is true, and when it is false."""
    if isinstance(test, nodes.Not):
        yes, no = _proofs(test.node)
        return no, yes
    if isinstance(test, (nodes.And, nodes.Or)):
        return _joined_proofs(test)
    return _defined_proofs(test) or _in_proofs(test) or (_NONE, _NONE)


def _joined_proofs(test: nodes.And | nodes.Or) -> tuple[Proofs, Proofs]:
    left, right = _proofs(test.left), _proofs(test.right)
    return (left[0] | right[0], _NONE) if isinstance(test, nodes.And) else (_NONE, left[1] | right[1])


def _defined_proofs(test: nodes.Node) -> tuple[Proofs, Proofs] | None:
    if not (isinstance(test, nodes.Test) and test.name in ("defined", "undefined")):
        return None
    found = chain(test.node)
    proof = frozenset([found[1]]) if found else _NONE
    return (proof, _NONE) if test.name == "defined" else (_NONE, proof)


def _in_proofs(test: nodes.Node) -> tuple[Proofs, Proofs] | None:
    """`'y' in x` proves x.y present; `'y' not in x` when it is false."""
    if not (isinstance(test, nodes.Compare) and len(test.ops) == 1 and test.ops[0].op in ("in", "notin")):
        return None
    key, found = const_string(test.expr), chain(test.ops[0].expr)
    proof = frozenset([(*found[1], key)]) if found and key is not None else _NONE
    return (proof, _NONE) if test.ops[0].op == "in" else (_NONE, proof)
