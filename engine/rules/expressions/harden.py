"""The tree of a rule expression made to pay its way before it is compiled."""

from __future__ import annotations

import copy
from typing import Any

from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.visitor import NodeTransformer

from .environment import CONCAT_FILTER, LOOP_FILTER, sandbox


class _Harden(NodeTransformer):
    """Every loop spends a step of the budget on each turn, and `~` weighs its parts before it
    writes them out: both through filters only the sandbox can name."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


def hardened(tree: Any) -> Any:
    found = _Harden().visit(tree)
    found.set_environment(sandbox())
    return found


def expression_template(expr: nodes.Expr) -> TemplateExpression:
    """A bare expression's tree compiled, as Environment.compile_expression compiles its source."""
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), hardened(expr), lineno=1)], lineno=1)
    body.set_environment(sandbox())
    return TemplateExpression(sandbox().from_string(body), undefined_to_none=False)


def copied(tree: Any) -> Any:
    """A copy of `tree` to harden (hardening changes a tree), sharing the sandbox it points to."""
    return copy.deepcopy(tree, {id(sandbox()): sandbox()})
