"""The expression language of rule files: Jinja2 in an immutable sandbox, with bounded work.

Rule files arrive through pull requests, so every expression is untrusted. It is compiled and
rendered only here, by an `ImmutableSandboxedEnvironment` with `StrictUndefined`, with size
bounds on sources, results and every operation that can make something large (see guards), and
a budget of steps and time for each render (see budget): every loop turn, call, filter, test and
operator spends a step. Validation refuses what no data can make cheap: a statement other than
if/for, a recursive loop, a sum that does not add numbers, and any part of an expression that
reads no field and still breaks a bound (it is evaluated, under the same bounds).
"""

from __future__ import annotations

import copy
import functools
import re
import string
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2 import sandbox as sandbox_module
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.nativetypes import NativeCodeGenerator, NativeTemplate
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from . import guards
from .budget import MAX_STEPS, budget, check_weight, made, spend
from .guards import MAX_RESULT
from .timeparse import parse_instant, zone

MAX_SOURCE = 2_000
# Filters the sandbox adds where a rule's expression has a loop or a `~`; a rule cannot write
# these names (a filter name has no space).
_LOOP_FILTER = "rule loop"
_CONCAT_FILTER = "rule concat"

# Statements a rule expression may use; everything else (macro, call, include, set...) is refused.
_ALLOWED_STATEMENTS = (nodes.Template, nodes.Output, nodes.If, nodes.For)
# The keyword a rule author wrote, for the node types whose names differ from it.
_STATEMENT_NAMES = {"Assign": "set", "AssignBlock": "set", "CallBlock": "call", "FromImport": "import",
                    "FilterBlock": "filter", "ExprStmt": "do", "Scope": "with",
                    "ScopedEvalContextModifier": "autoescape"}


class ExpressionError(Exception):
    """An expression cannot be compiled or rendered; the message says why."""


def _plain(value: Any, depth: int = 0) -> Any:
    """The rendered value as JSON data. A native render returns a lone value as is, so without
    this a StrictUndefined, a generator (`items | map(...)`) or a function would slip into the
    payload instead of failing here."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises here (the sandbox's SecurityError for unsafe attributes)
        raise UndefinedError("the expression gives an undefined value")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)  # a Markup (from `tojson`, `safe`...) becomes a plain string
    if depth >= 64:
        raise ExpressionError("the value is nested deeper than 64 levels")
    if depth == 0:
        check_weight(value)  # the payload is written out as JSON, shared items repeated
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, range, Iterator, KeysView, ValuesView, ItemsView)):
        items = list(islice(value, MAX_RESULT + 1))
        if len(items) > MAX_RESULT:
            raise ExpressionError(f"gives more than {MAX_RESULT} items")
        if depth == 0 and isinstance(value, Iterator):
            check_weight(items)
        return [_plain(v, depth + 1) for v in items]
    raise ExpressionError(f"gives a {type(value).__name__}, which is not a JSON value")


def _concat(values: Iterable[Any]) -> Any:
    # Like Jinja's native_concat, but never literal_eval's a string: an id "123" stays "123".
    head = list(islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return _plain(head[0])
    out, size = [], 0
    for value in chain(head, values):  # counted as it goes: a loop cannot build a huge string first
        if not isinstance(value, str):
            check_weight(value)  # before str() writes a collection out, shared items repeated
        text = str(value)
        size += len(text)
        if size > MAX_RESULT:
            raise ExpressionError(f"renders to more than {MAX_RESULT} characters")
        out.append(text)
    return "".join(out)


class RuleTemplate(NativeTemplate):
    """NativeTemplate.render calls NativeEnvironment.concat (which literal_eval's "123" into 123
    and "None" into None); render with the sandbox's own concat instead."""

    @functools.cached_property
    def _globals(self) -> dict[str, Any]:
        return dict(self.globals)

    def new_context(self, vars: dict[str, Any] | None = None, shared: bool = False, locals: Any = None) -> Any:
        # As Template.new_context, without walking the ChainMap of globals on every render (more
        # than half the cost of rendering a short expression); the sandbox's globals are set once.
        if shared or locals:
            return super().new_context(vars, shared, locals)
        return self.environment.context_class(self.environment, {**self._globals, **(vars or {})}, self.name,
                                              self.blocks, globals=self._globals)

    def render(self, *args: Any, **kwargs: Any) -> Any:
        ctx = self.new_context(dict(*args, **kwargs))
        try:
            return self.environment.concat(self.root_render_func(ctx))
        except Exception:
            return self.environment.handle_exception()


class RuleSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, producing native values, each operation bounded (see guards)."""

    code_generator_class = NativeCodeGenerator
    template_class = RuleTemplate
    concat = staticmethod(_concat)
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        spend()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            args = guards.str_call_args(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return made(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        return guards.wrap_str_format(self, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        spend()
        guards.check_binop(operator, left, right)
        return made(super().call_binop(context, operator, left, right))


def _local_time(value: Any, tz: str | None = None, fmt: str = "%A %d %B %Y, %H:%M") -> str:
    instant = value if isinstance(value, datetime) else parse_instant(str(value))
    return instant.astimezone(zone(tz) if tz else UTC).strftime(fmt)


_EXPONENT = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}
_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥", "INR": "₹", "CHF": "CHF "}


def _money(amount: Any, currency: str = "USD") -> str:
    currency = str(currency).upper()
    exponent = _EXPONENT.get(currency, 2)
    value = int(amount) / (10**exponent)
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.{exponent}f}"
    symbol = _SYMBOL.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def _iso(value: Any) -> str:
    instant = value if isinstance(value, datetime) else parse_instant(str(value))
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1)
def sandbox() -> RuleSandbox:
    env = RuleSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update(local_time=_local_time, money=_money, iso=_iso)
    for name, original in list(env.filters.items()):
        env.filters[name] = guards.guarded_filter(name, original)
    for name, test in list(env.tests.items()):
        env.tests[name] = guards.guarded_test(test)
    env.filters[_LOOP_FILTER] = guards.loop_turns
    env.filters[_CONCAT_FILTER] = guards.concat
    # Rules need `range` and `dict`; the other globals only serve as gadgets in injection attempts.
    for name in ("lipsum", "cycler", "joiner", "namespace"):
        env.globals.pop(name, None)
    return env


GLOBALS = frozenset({"range", "dict"})


def _parse(source: str, *, expression: bool) -> Any:
    """Parse and audit: the tree of a template (a nodes.Template) or of a bare expression (a
    nodes.Expr). What is refused here is refused by `engine validate` and by the renderer."""
    _check_source(source)
    try:
        tree = _parse_expression(source) if expression else sandbox().parse(source)
    except TemplateError as exc:
        raise ExpressionError(f"does not compile: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    _audit(tree)
    return tree


def _parse_expression(source: str) -> nodes.Expr:
    # As Environment.compile_expression parses, keeping the tree.
    parser = Parser(sandbox(), source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise ExpressionError("does not compile: chunk after expression")
    expr.set_environment(sandbox())
    return expr


def _find(tree: nodes.Node, kinds: Any) -> Iterator[Any]:
    """The nodes of `kinds` in `tree`, `tree` itself included (Node.find_all leaves it out: it
    is the whole of a bare expression such as `status`)."""
    if isinstance(tree, kinds):
        yield tree
    yield from tree.find_all(kinds)


def _audit(tree: nodes.Node) -> None:
    for node in _find(tree, nodes.Stmt):
        if not isinstance(node, _ALLOWED_STATEMENTS):
            name = _STATEMENT_NAMES.get(type(node).__name__, type(node).__name__.lower())
            raise ExpressionError(f"the statement '{name}' is not allowed in rule expressions")
        if isinstance(node, nodes.For) and node.recursive:
            # a recursive loop turns outside the budget's count
            raise ExpressionError("a recursive loop is not allowed in rule expressions")
    for node in _find(tree, (nodes.Getattr, nodes.Name)):
        name = node.attr if isinstance(node, nodes.Getattr) else node.name
        if name.startswith("_"):
            raise ExpressionError(f"'{name}': names starting with an underscore are not allowed")
    for name in _attribute_names(tree):
        if any(part.startswith("_") for part in name.split(".")):
            raise ExpressionError(f"'{name}': names starting with an underscore are not allowed")
    for node in _find(tree, nodes.Getattr):
        if node.attr in _UNSAFE_ATTRIBUTES:
            raise ExpressionError(f"'{node.attr}' is refused by the sandbox")
    for node in _find(tree, nodes.Call):
        called = node.node
        if isinstance(called, nodes.Getattr) and _mutates(called.attr):
            raise ExpressionError(f"'{called.attr}()' changes a value, which rule expressions cannot do")
    for node in _find(tree, nodes.Filter):
        if node.name == "sum" and not _a_number(_filter_argument(node, 1, "start")):
            raise ExpressionError("the sum filter adds numbers: its start must be a number")


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


def _mutates(name: str) -> bool:
    return any(sandbox_module.modifies_known_mutable(sample, name) for sample in _MUTABLE_SAMPLES)


def _attribute_names(tree: nodes.Node) -> Iterator[str]:
    """Every attribute name an expression asks for, in any branch: `x.name`, `x['name']`, the
    names given to attr, map(attribute=...) and their kind, and the fields of a str.format
    pattern. A name made of constants (`'__cla' ~ 'ss__'`) is evaluated first."""
    for node in _find(tree, (nodes.Getattr, nodes.Name)):
        yield node.attr if isinstance(node, nodes.Getattr) else node.name
    for node in _find(tree, nodes.Getitem):
        yield from _strings(node.arg)
    for node in _find(tree, nodes.Filter):
        index, keyword = _ATTRIBUTE_FILTERS.get(node.name, (None, None))
        if keyword is not None:
            argument = _filter_argument(node, index, keyword) if index is not None else next(
                (k.value for k in node.kwargs if k.key == keyword), None)
            if argument is not None:
                yield from _strings(argument)
    for node in _find(tree, nodes.Call):
        called = node.node
        if isinstance(called, nodes.Getattr) and called.attr in ("format", "format_map"):
            for pattern in _strings(called.node):
                yield from _format_fields(pattern)


def _strings(node: nodes.Node) -> Iterator[str]:
    """The string `node` gives when it reads nothing (a constant, or constants joined)."""
    if isinstance(node, nodes.Const):
        if isinstance(node.value, str):
            yield node.value
    elif isinstance(node, (nodes.Concat, nodes.Add)) and _constant(node):
        try:
            with budget():
                value = _expression_template(copy.deepcopy(node, {id(sandbox()): sandbox()}))()
        except Exception:  # noqa: BLE001 - a constant that fails to evaluate is refused by _Constants
            return
        if isinstance(value, str):
            yield value


def _format_fields(pattern: str) -> Iterator[str]:
    """The attribute and item names in the fields of a str.format pattern (`{0.__class__}`)."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError:
        return
    for _, field, spec, _ in parsed:
        for part in (field, spec):
            if part:
                yield from (m.group(1).strip("'\"") for m in _FIELD_STEP.finditer(part))


def _filter_argument(node: nodes.Filter, index: int, name: str) -> nodes.Expr | None:
    keyword = next((k.value for k in node.kwargs if k.key == name), None)
    return keyword if keyword is not None else (node.args[index] if len(node.args) > index else None)


def _a_number(node: nodes.Expr | None) -> bool:
    if isinstance(node, nodes.Neg):
        node = node.node
    return node is None or (isinstance(node, nodes.Const) and isinstance(node.value, (int, float)))


class _Harden(NodeTransformer):
    """Every loop spends a step of the budget on each turn, and `~` weighs its parts before it
    writes them out: both through filters only the sandbox can name."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), _CONCAT_FILTER, [], [], None, None,
                            lineno=node.lineno)


def _hardened(tree: Any) -> Any:
    hardened = _Harden().visit(tree)
    hardened.set_environment(sandbox())
    return hardened


def _expression_template(expr: nodes.Expr) -> TemplateExpression:
    # As Environment.compile_expression compiles, from a (hardened) tree.
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), _hardened(expr), lineno=1)], lineno=1)
    body.set_environment(sandbox())
    return TemplateExpression(sandbox().from_string(body), undefined_to_none=False)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _check_source(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"expression longer than {MAX_SOURCE} characters")


@functools.lru_cache(maxsize=16_384)
def compile_template(source: str) -> Any:
    tree = _parse(source, expression=False)
    try:
        with budget():  # Jinja evaluates constant parts while it compiles
            return sandbox().from_string(_hardened(tree))
    except TemplateError as exc:
        raise ExpressionError(f"does not compile: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None


@functools.lru_cache(maxsize=16_384)
def compile_expression(source: str) -> Any:
    expr = _parse(source, expression=True)
    try:
        with budget():
            return _expression_template(expr)
    except TemplateError as exc:
        raise ExpressionError(f"does not compile: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_RESULT:
        raise ExpressionError(f"renders to more than {MAX_RESULT} characters")
    return value


def _describe(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, TemplateError):
        return exc.message or str(exc)
    return f"{type(exc).__name__}: {exc}"


_LOOKUP = re.compile(r"\{\{\s*([A-Za-z]\w*(?:\.[A-Za-z]\w*)*)\s*\}\}")
# Text Jinja passes through untouched: no delimiter can start in it, no newline to normalise.
_TEXT = re.compile(r"[^{}\r\n]*")
_MISSING = object()


@functools.lru_cache(maxsize=16_384)
def _lookups(source: str) -> tuple[str | tuple[str, ...], ...] | None:
    """A template made of plain lookups and plain text, such as `{{ booking.service.name }}` or
    `{{ notification }}:{{ booking.id }}`, as its parts: text as a string, a lookup as its names.
    None for any other template."""
    parts: list[str | tuple[str, ...]] = []
    end = 0
    for found in _LOOKUP.finditer(source):
        text = source[end:found.start()]
        if not _TEXT.fullmatch(text):
            return None
        if text:
            parts.append(text)
        parts.append(tuple(found.group(1).split(".")))
        end = found.end()
    tail = source[end:]
    if not parts or not _TEXT.fullmatch(tail):
        return None
    if tail:
        parts.append(tail)
    return tuple(parts)


_JINJA_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "self", "loop", "caller", "varargs",
                          "kwargs"})


def _lookup(context: dict[str, Any], path: tuple[str, ...]) -> Any:
    """What the template gives for `path` when every step is a key of a plain dict (most data
    fields are such lookups, and a Jinja render costs ten times more); _MISSING where Jinja would
    do something else: a constant or a name of its own (`none`, `self`), a global, a dict's own
    attribute (`items`), an undefined name."""
    if path[0] in _JINJA_NAMES or path[0] not in context:
        return _MISSING
    value = context[path[0]]
    for name in path[1:]:
        if type(value) is not dict or name not in value or hasattr(dict, name):
            return _MISSING
        value = value[name]
    return value


def _render_lookups(parts: tuple[str | tuple[str, ...], ...], context: dict[str, Any]) -> Any:
    """What the template of `parts` renders to, or _MISSING where a lookup is not a plain one (a
    lone lookup gives the value itself, as a native render does: `_concat` sees to it)."""
    values = []
    for part in parts:
        found = part if isinstance(part, str) else _lookup(context, part)
        if found is _MISSING:
            return _MISSING
        values.append(found)
    return _bounded(_concat(iter(values)))  # as the template joins its output, with the same bound


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render one data value: a template string is rendered, anything else returned as is."""
    if not is_template(value):
        return value
    try:
        template = compile_template(value)  # checks the source (once: it is cached)
        parts = _lookups(value)
        if parts is not None:
            found = _render_lookups(parts, context)
            if found is not _MISSING:
                return found
        with budget():
            return _bounded(template.render(context))
    except ExpressionError:
        raise
    except Exception as exc:  # the sandbox and user data can raise anything; report it
        raise ExpressionError(_describe(exc)) from None


def evaluate(source: str, context: dict[str, Any]) -> Any:
    """Evaluate a bare expression (a condition, a template selector)."""
    try:
        expression = compile_expression(source)
        with budget():
            return _bounded(_plain(expression(**context)))
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(_describe(exc)) from None


@dataclass(frozen=True)
class Reference:
    """A dotted read from the context: ("booking", "service", "name"); `index` marks items[N]."""

    path: tuple[str, ...]
    index: bool = False
    # How many leading steps a guard proves present where it is read (`x.y is defined`, `'y' in
    # x`, on the branch they guard; `x.y | default(...)` and `x.y is defined` themselves).
    defined: int = 0
    lenient: bool = False  # its last step may be missing: it is what `default` or `is defined` reads

    def optional_ok(self, step: int) -> bool:
        """Whether step `step` (0-based) of the path may be missing from an event here."""
        return step < self.defined or (self.lenient and step == len(self.path) - 1)


@dataclass(frozen=True)
class Nullable:
    """How the value of a lone expression can be null: `why` when it can whatever the data
    (`| default(none)`), `paths` whose own value it gives as is (null if the schema allows)."""

    why: str | None
    paths: tuple[tuple[str, ...], ...]


@functools.lru_cache(maxsize=16_384)
def analyse(source: str, *, expression: bool) -> tuple[Reference, ...]:
    """The context fields an expression reads; raises ExpressionError for anything refused,
    including a part that reads no field and breaks a bound when evaluated (see _Constants)."""
    tree = _parse(source, expression=expression)
    compile_expression(source) if expression else compile_template(source)
    refs = _references(tree)
    try:
        with budget():
            _Constants().check(copy.deepcopy(tree, {id(sandbox()): sandbox()}))
    except ExpressionError:
        raise
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    except Exception as exc:
        raise ExpressionError(_describe(exc)) from None
    return refs


def _references(tree: nodes.Node) -> tuple[Reference, ...]:
    local = _loop_names(tree)
    refs: list[Reference] = []
    parents = _parent_map(tree)
    guards = _Guards()
    guards.visit(tree, frozenset())
    guarded = guards.proven
    for name in _find(tree, nodes.Name):
        if name.ctx != "load" or id(name) in local or name.name in GLOBALS:
            continue
        path, index, node = [name.name], False, name
        while True:
            parent = parents.get(id(node))
            if isinstance(parent, nodes.Getattr) and parent.node is node:
                path.append(parent.attr)
            elif isinstance(parent, nodes.Getitem) and parent.node is node:
                if isinstance(parent.arg, nodes.Const) and isinstance(parent.arg.value, str):
                    path.append(parent.arg.value)
                elif isinstance(parent.arg, nodes.Const) and isinstance(parent.arg.value, int) and len(path) == 1:
                    index = True
                else:
                    break
            else:
                break
            node = parent
        defined, lenient = guarded.get(id(name), (0, False))
        refs.append(Reference(tuple(path), index, defined, lenient))
    return tuple(refs)


def _loop_names(tree: nodes.Node) -> set[int]:
    """The names (node ids) that read what a `for` binds, not the context: its targets in its
    `if` and body, and `loop` in its body. As Jinja scopes them: neither is seen by the iterable,
    the `else` or anything after the loop, where the same name reads the context again."""
    found: set[int] = set()
    stack: list[tuple[nodes.Node, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        node, bound = stack.pop()
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name in bound:
                found.add(id(node))
        elif isinstance(node, nodes.For):
            targets = bound | {n.name for n in _find(node.target, nodes.Name)}
            stack += [(node.iter, bound), *((child, bound) for child in node.else_)]
            stack += [(node.test, targets)] if node.test is not None else []
            stack += [(child, targets | {"loop"}) for child in node.body]
        else:
            stack += [(child, bound) for child in node.iter_child_nodes()]
    return found


def _chain(node: nodes.Node) -> tuple[nodes.Name, tuple[str, ...]] | None:
    """The name and dotted path of `a.b['c']`; None for anything else."""
    steps: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            steps.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            steps.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name) or node.ctx != "load":
        return None
    return node, (node.name, *reversed(steps))


_DEFAULT_FILTERS = ("default", "d")


class _Guards:
    """For each name a chain of reads starts at, how many of its steps are proven present.

    StrictUndefined makes every read of a missing field fail, `if x.y` included; what may read
    one is `x.y | default(...)` and `x.y is defined`, and the branch a test guards: the `then` of
    `x.y is defined` (or `'y' in x`), the `else` of `x.y is not defined`, the right of `and`
    after a proof and of `or` after a disproof. One walk, each node visited once."""

    def __init__(self) -> None:
        self.proven: dict[int, tuple[int, bool]] = {}

    def visit(self, node: nodes.Node, proven: frozenset[tuple[str, ...]]) -> None:
        if isinstance(node, (nodes.CondExpr, nodes.If)):
            self.visit(node.test, proven)
            yes, no = _proofs(node.test)
            if isinstance(node, nodes.CondExpr):
                branches: tuple[Any, Any] = (node.expr1, node.expr2)
            else:
                branches = (node.body, [*node.elif_, *node.else_])
            for branch, more in zip(branches, (yes, no), strict=True):
                for child in (branch if isinstance(branch, list) else [branch] if branch is not None else []):
                    self.visit(child, proven | more)
            return
        if isinstance(node, (nodes.And, nodes.Or)):
            self.visit(node.left, proven)
            yes, no = _proofs(node.left)
            self.visit(node.right, proven | (yes if isinstance(node, nodes.And) else no))
            return
        operand, lenient = None, False
        if isinstance(node, nodes.Filter):
            operand, lenient = node.node, node.name in _DEFAULT_FILTERS
        elif isinstance(node, nodes.Test):
            operand, lenient = node.node, node.name in ("defined", "undefined")
        found = _chain(operand) if lenient and operand is not None else _chain(node)
        if found is not None:
            name, path = found
            known = max((len(p) for p in proven if path[:len(p)] == p), default=0)
            self.proven.setdefault(id(name), (known, lenient))
        for child in node.iter_child_nodes():
            self.visit(child, proven)


def _proofs(test: nodes.Node) -> tuple[frozenset[tuple[str, ...]], frozenset[tuple[str, ...]]]:
    """The paths proven present when `test` is true, and when it is false."""
    empty: frozenset[tuple[str, ...]] = frozenset()
    if isinstance(test, nodes.Not):
        yes, no = _proofs(test.node)
        return no, yes
    if isinstance(test, nodes.And):
        return _proofs(test.left)[0] | _proofs(test.right)[0], empty
    if isinstance(test, nodes.Or):
        return empty, _proofs(test.left)[1] | _proofs(test.right)[1]
    if isinstance(test, nodes.Test) and test.name in ("defined", "undefined"):
        found = _chain(test.node)
        proof = frozenset([found[1]]) if found else empty
        return (proof, empty) if test.name == "defined" else (empty, proof)
    if (isinstance(test, nodes.Compare) and isinstance(test.expr, nodes.Const) and isinstance(test.expr.value, str)
            and len(test.ops) == 1 and test.ops[0].op in ("in", "notin")):
        found = _chain(test.ops[0].expr)
        proof = frozenset([(*found[1], test.expr.value)]) if found else empty
        return (proof, empty) if test.ops[0].op == "in" else (empty, proof)
    return empty, empty


@functools.lru_cache(maxsize=16_384)
def nullable(source: str, *, expression: bool) -> Nullable | None:
    """How a data value that is one lone expression (`{{ ... }}`) can render null; None when it
    cannot, or is more than one expression (text around a null writes 'None')."""
    tree = _parse(source, expression=expression)
    if not expression:
        if not (len(tree.body) == 1 and isinstance(tree.body[0], nodes.Output) and len(tree.body[0].nodes) == 1):
            return None
        tree = tree.body[0].nodes[0]
    why, paths = _null_sources(tree)
    return Nullable(why, paths) if why or paths else None


def _null_sources(node: nodes.Node) -> tuple[str | None, tuple[tuple[str, ...], ...]]:
    if isinstance(node, nodes.Const) and node.value is None:
        return "it is none", ()
    if isinstance(node, nodes.Filter) and node.name in _DEFAULT_FILTERS:
        fallback = node.args[0] if node.args else next((k.value for k in node.kwargs if k.key == "default_value"), None)
        if isinstance(fallback, nodes.Const) and fallback.value is None:
            return f"`| {node.name}(none)` gives null when the field is missing", ()
        inner = _null_sources(node.node) if node.node is not None else (None, ())
        fall = _null_sources(fallback) if fallback is not None else (None, ())
        return inner[0] or fall[0], inner[1] + fall[1]
    if isinstance(node, nodes.CondExpr):
        if node.expr2 is None:
            return "an `if` without `else` gives nothing when its test is false", ()
        one, two = _null_sources(node.expr1), _null_sources(node.expr2)
        return one[0] or two[0], one[1] + two[1]
    if isinstance(node, (nodes.And, nodes.Or)):
        one, two = _null_sources(node.left), _null_sources(node.right)
        return one[0] or two[0], one[1] + two[1]
    found = _chain(node)
    return (None, (found[1],)) if found else (None, ())


class _Constants:
    """Evaluates, under the render's own bounds, every part of an expression that reads no field
    (`['x' * 10000] * 10000` behind a condition no example meets), and counts the turns of loops
    over such parts, nested ones multiplied: what fails here fails with any data."""

    def check(self, node: nodes.Node, turns: int = 1) -> None:
        if isinstance(node, nodes.For):
            self.loop(node, turns)
        elif isinstance(node, nodes.Output):
            for part in node.nodes:
                if _constant(part):
                    self.output(part)
                else:
                    self.check(part, turns)
        elif isinstance(node, nodes.Expr) and _constant(node):
            self.value(node)
        else:  # a statement, or an expression that reads a field: its parts may not
            for child in node.iter_child_nodes():
                self.check(child, turns)

    def loop(self, node: nodes.For, turns: int) -> None:
        if isinstance(node.iter, nodes.Expr) and _constant(node.iter):
            found = self.value(node.iter)
            turns *= len(found) if hasattr(found, "__len__") else 1
            if turns >= MAX_STEPS:
                raise ExpressionError(f"its loops would turn more than {MAX_STEPS} times ({turns})")
        else:
            self.check(node.iter, turns)
        for child in (*node.body, *([node.test] if node.test else [])):
            self.check(child, turns)
        for child in node.else_:
            self.check(child, turns)

    def value(self, node: nodes.Expr) -> Any:
        if isinstance(node, (nodes.Const, nodes.Name, nodes.TemplateData)):
            return node.as_const() if isinstance(node, nodes.Const) else None
        return _expression_template(node)()

    def output(self, node: nodes.Expr) -> None:
        if not isinstance(node, (nodes.Const, nodes.TemplateData)):
            _bounded(_plain(self.value(node)))  # as a lone value is given, or refused


def _constant(node: nodes.Node) -> bool:
    """Whether `node` is an expression that reads nothing but the sandbox's globals."""
    if not isinstance(node, nodes.Expr) or isinstance(node, (nodes.ContextReference, nodes.DerivedContextReference)):
        return False
    return all(name.ctx == "load" and name.name in GLOBALS for name in _find(node, nodes.Name)) and not any(
        _find(node, (nodes.ContextReference, nodes.DerivedContextReference, nodes.InternalName)))


def _parent_map(tree: nodes.Node) -> dict[int, nodes.Node]:
    parents: dict[int, nodes.Node] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.iter_child_nodes():
            parents[id(child)] = node
            stack.append(child)
    return parents

