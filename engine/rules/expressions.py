"""The expression language of rule files: Jinja2 in an immutable sandbox, with bounded work.

Rule files arrive through pull requests, so every expression is untrusted. It is compiled and
rendered only here, by an `ImmutableSandboxedEnvironment` with `StrictUndefined`, with size
bounds on sources, results and the operators that can blow memory up (`*`, `**`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain, islice
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.nativetypes import NativeCodeGenerator, NativeTemplate
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .timeparse import parse_instant

MAX_SOURCE = 2_000
MAX_RESULT = 10_000
MAX_POWER = 1_000_000

# Statements a rule expression may use; everything else (macro, call, include, set...) is refused.
_ALLOWED_STATEMENTS = (nodes.Template, nodes.Output, nodes.If, nodes.For)
# The keyword a rule author wrote, for the node types whose names differ from it.
_STATEMENT_NAMES = {"Assign": "set", "AssignBlock": "set", "CallBlock": "call", "FromImport": "import",
                    "FilterBlock": "filter", "ExprStmt": "do", "Scope": "with", "ScopedEvalContextModifier": "autoescape"}


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
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, range, Iterator, KeysView, ValuesView, ItemsView)):
        items = list(islice(value, MAX_RESULT + 1))
        if len(items) > MAX_RESULT:
            raise ExpressionError(f"gives more than {MAX_RESULT} items")
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
        text = str(value)
        size += len(text)
        if size > MAX_RESULT:
            raise ExpressionError(f"renders to more than {MAX_RESULT} characters")
        out.append(text)
    return "".join(out)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


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
        return self.environment.context_class(self.environment, {**self._globals, **(vars or {})}, self.name, self.blocks,
                                              globals=self._globals)

    def render(self, *args: Any, **kwargs: Any) -> Any:
        ctx = self.new_context(dict(*args, **kwargs))
        try:
            return self.environment.concat(self.root_render_func(ctx))  # type: ignore[attr-defined]
        except Exception:
            return self.environment.handle_exception()


class RuleSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, producing native values, with the operators that allocate bounded."""

    code_generator_class = NativeCodeGenerator
    template_class = RuleTemplate
    concat = staticmethod(_concat)  # type: ignore[assignment]
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        # str methods that take a width or multiply their input allocate before any later
        # check could run: refuse the sizes up front.
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_call(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_widths(owner)
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            _check_widths(left)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _size(seq) and isinstance(n, int) and _size(seq) * n > MAX_RESULT:
                    raise SecurityError(f"a repetition of more than {MAX_RESULT} items is not allowed")
        if operator == "**" and isinstance(right, (int, float)) and isinstance(left, (int, float)):
            if abs(right) > 64 or (abs(left) > 1 and abs(right) * max(len(str(int(abs(left)))), 1) > 64):
                raise SecurityError("a power this large is not allowed")
        if operator == "+" and _size(left) + _size(right) > MAX_RESULT:
            raise SecurityError(f"a result longer than {MAX_RESULT} is not allowed")
        return super().call_binop(context, operator, left, right)


_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}
_NUMBER = re.compile(r"\d+")


def _too_big(message: str) -> SecurityError:
    return SecurityError(f"{message} (the limit is {MAX_RESULT})")


def _check_widths(fmt: str) -> None:
    """A printf or str.format pattern may not ask for a field wider than the bound."""
    if any(len(n) > 6 or int(n) > MAX_RESULT for n in _NUMBER.findall(fmt)):
        raise _too_big("a format width this large is not allowed")


def _check_str_call(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in _WIDTH_METHODS:
        width = args[0] if args else next(iter(kwargs.values()), 0)
        if isinstance(width, int) and width * (8 if name == "expandtabs" else 1) > MAX_RESULT:
            raise _too_big(f"str.{name} this wide is not allowed")
    elif name == "replace" and len(args) >= 2:
        grows = owner.count(str(args[0])) * len(str(args[1])) if args[0] else (len(owner) + 1) * len(str(args[1]))
        if len(owner) + grows > MAX_RESULT:
            raise _too_big("a replacement this large is not allowed")
    elif name in ("format", "format_map"):
        _check_widths(owner)


def _bounded_filter(name: str, original: Any, width_arg: int | None) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if width_arg is not None and len(args) > width_arg and isinstance(args[width_arg], int) and args[width_arg] > MAX_RESULT:
            raise _too_big(f"the {name} filter this wide is not allowed")
        if name == "format" and args and isinstance(args[0], str):
            _check_widths(args[0])
        if name == "replace" and len(args) >= 3 and isinstance(args[0], str):
            _check_str_call(args[0], "replace", (args[1], args[2]), {})
        return original(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # keep Jinja's pass_context/pass_environment markers
        if hasattr(original, attr):
            setattr(bounded, attr, getattr(original, attr))
    return bounded


def _local_time(value: Any, tz: str | None = None, fmt: str = "%A %d %B %Y, %H:%M") -> str:
    instant = value if isinstance(value, datetime) else parse_instant(str(value))
    zone = ZoneInfo(tz) if tz else timezone.utc
    return instant.astimezone(zone).strftime(fmt)


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
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1)
def sandbox() -> RuleSandbox:
    env = RuleSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update(local_time=_local_time, money=_money, iso=_iso)
    for name, width_arg in (("center", 1), ("indent", 1), ("wordwrap", 1), ("truncate", None), ("format", None), ("replace", None)):
        env.filters[name] = _bounded_filter(name, env.filters[name], width_arg)
    # Rules need `range` and `dict`; the other globals only serve as gadgets in injection attempts.
    for name in ("lipsum", "cycler", "joiner", "namespace"):
        env.globals.pop(name, None)
    return env


GLOBALS = frozenset({"range", "dict"})


def _parse(source: str, *, expression: bool) -> Any:
    """Parse and audit: statements other than if/for and names starting with `_` are refused
    here, so both `engine validate` and the renderer at run time refuse them."""
    _check_source(source)
    text = "{{ (" + source + ") }}" if expression else source
    try:
        tree = sandbox().parse(text)
    except TemplateError as exc:
        raise ExpressionError(f"does not compile: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    for node in tree.find_all(nodes.Stmt):
        if not isinstance(node, _ALLOWED_STATEMENTS):
            name = _STATEMENT_NAMES.get(type(node).__name__, type(node).__name__.lower())
            raise ExpressionError(f"the statement '{name}' is not allowed in rule expressions")
    for node in tree.find_all((nodes.Getattr, nodes.Name)):
        name = node.attr if isinstance(node, nodes.Getattr) else node.name
        if name.startswith("_"):
            raise ExpressionError(f"'{name}': names starting with an underscore are not allowed")
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            raise ExpressionError(f"'{node.arg.value}': names starting with an underscore are not allowed")
    return tree


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _check_source(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"expression longer than {MAX_SOURCE} characters")


@functools.lru_cache(maxsize=16_384)
def compile_template(source: str) -> Any:
    _parse(source, expression=False)
    try:
        return sandbox().from_string(source)
    except TemplateError as exc:
        raise ExpressionError(f"does not compile: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None


@functools.lru_cache(maxsize=16_384)
def compile_expression(source: str) -> Any:
    _parse(source, expression=True)
    try:
        return sandbox().compile_expression(source, undefined_to_none=False)
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


_JINJA_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "self", "loop", "caller", "varargs", "kwargs"})


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
        return _bounded(template.render(context))
    except ExpressionError:
        raise
    except Exception as exc:  # the sandbox and user data can raise anything; report it
        raise ExpressionError(_describe(exc)) from None


def evaluate(source: str, context: dict[str, Any]) -> Any:
    """Evaluate a bare expression (a condition, a template selector)."""
    try:
        return _bounded(_plain(compile_expression(source)(**context)))
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(_describe(exc)) from None


@dataclass(frozen=True)
class Reference:
    """A dotted read from the context: ("booking", "service", "name"); `index` marks items[N]."""

    path: tuple[str, ...]
    index: bool = False


@functools.lru_cache(maxsize=16_384)
def analyse(source: str, *, expression: bool) -> tuple[Reference, ...]:
    """The context fields an expression reads; raises ExpressionError for anything refused."""
    tree = _parse(source, expression=expression)
    compile_expression(source) if expression else compile_template(source)
    local = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    refs: list[Reference] = []
    parents = _parent_map(tree)
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name in local or name.name in GLOBALS:
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
        refs.append(Reference(tuple(path), index))
    return tuple(refs)


def _parent_map(tree: nodes.Node) -> dict[int, nodes.Node]:
    parents: dict[int, nodes.Node] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.iter_child_nodes():
            parents[id(child)] = node
            stack.append(child)
    return parents

