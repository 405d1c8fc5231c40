"""The checks the sandbox makes around each operation of a rule expression.

Python allocates inside one call, where no later check can stop it: `'x'.center(10**9)` asks for
a gigabyte before it returns. So each operation that can make something much larger than its
inputs (a width, a repetition, a join, a printf `*` width, text made of a collection whose items
repeat) is checked before it runs; everything an operation makes is counted after it runs (see
budget.made); and every operation spends a step of the render's budget.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import update_wrapper
from itertools import islice
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import _PassArg
from markupsafe import Markup

from .budget import MAX_VALUE, OverBudget, check_weight, made, spend, weight

# The widest field, the longest repetition, and the longest value a render gives.
MAX_RESULT = 10_000
# Filters that never write their input out as text nor make anything larger than it: their input
# is not weighed first (a digest sums a large `items`).
STRUCTURAL_FILTERS = frozenset({
    "abs", "attr", "batch", "count", "d", "default", "dictsort", "first", "float", "groupby", "int", "items", "last",
    "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse", "round", "select",
    "selectattr", "slice", "sort", "sum", "unique",
})
_NUMBER = re.compile(r"\d+")
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def too_big(message: str) -> SecurityError:
    return SecurityError(f"{message} (the limit is {MAX_RESULT})")


def check_widths(fmt: str) -> None:
    """A printf or str.format pattern may not ask for a field wider than the bound."""
    if any(len(n) > 6 or int(n) > MAX_RESULT for n in _NUMBER.findall(fmt)):
        raise too_big("a format width this large is not allowed")


def check_printf(fmt: str, args: Any) -> None:
    """`fmt % args`: literal widths, widths taken from the arguments (`%*s`), and collections
    written out by `%s`."""
    check_widths(fmt)
    values = args if isinstance(args, tuple) else (args,)
    if "*" in fmt and any(isinstance(v, int) and abs(v) > MAX_RESULT for v in values):
        raise too_big("a format width this large is not allowed")
    check_weight(args)


def pulled(iterable: Iterable[Any]) -> list[Any]:
    """The items of `iterable` as a list, refused past MAX_VALUE items (an iterator is pulled
    one item at a time, each made by guarded operations)."""
    items = list(islice(iterable, MAX_VALUE + 1))
    if len(items) > MAX_VALUE:
        raise OverBudget(f"more than {MAX_VALUE} items is not allowed")
    return items


def _text_size(items: list[Any], separator: str) -> int:
    size = len(separator) * max(len(items) - 1, 0)
    for item in items:
        size += len(item) if isinstance(item, str) else weight(item, MAX_VALUE - size)
        if size > MAX_VALUE:
            break
    return size


def str_call_args(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a call of `owner.name(*args, **kwargs)` before it allocates; the arguments to call
    it with (a join's iterable, pulled into a list to be measured)."""
    if name in _WIDTH_METHODS:
        _check_width_call(owner, name, args, kwargs)
    elif name == "replace" and len(args) >= 2:
        _check_replacement(owner, args[0], args[1])
    elif name in ("format", "format_map"):
        check_widths(owner)
    elif name == "join" and args:
        return (_measured_join(pulled(args[0]), owner), *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        _check_translation(owner, args[0])
    return args


def _check_width_call(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = args[0] if args else next(iter(kwargs.values()), 0)
    if isinstance(width, int) and width * (8 if name == "expandtabs" else 1) > MAX_RESULT:
        raise too_big(f"str.{name} this wide is not allowed")
    if name == "expandtabs" and isinstance(width, int) and len(owner) * max(width, 1) > MAX_VALUE:
        raise too_big("str.expandtabs of this much text is not allowed")


def _check_replacement(owner: str, old: Any, new: Any) -> None:
    grows = owner.count(str(old)) * len(str(new)) if old else (len(owner) + 1) * len(str(new))
    if len(owner) + grows > MAX_RESULT:
        raise too_big("a replacement this large is not allowed")


def _measured_join(items: list[Any], separator: str) -> list[Any]:
    """The items of a join, once what it would make is known to be within MAX_VALUE."""
    if _text_size(items, separator) > MAX_VALUE:
        raise OverBudget(f"a join longer than {MAX_VALUE} characters is not allowed")
    return items


def _check_translation(owner: str, table: Mapping[Any, Any]) -> None:
    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
    if len(owner) * longest > MAX_VALUE:
        raise OverBudget(f"a translation longer than {MAX_VALUE} characters is not allowed")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """The operators that can allocate far more than their operands: `%`, `*`, `**`, `+`."""
    if operator == "%" and isinstance(left, str):
        check_printf(left, right)
    if operator == "*":
        _check_repetition(left, right)
        _check_repetition(right, left)
    if operator == "**" and isinstance(right, (int, float)) and isinstance(left, (int, float)) and _huge(left, right):
        raise SecurityError("a power this large is not allowed")
    if operator == "+" and _size(left) + _size(right) > MAX_RESULT:
        raise SecurityError(f"a result longer than {MAX_RESULT} is not allowed")


def _check_repetition(seq: Any, n: Any) -> None:
    """`seq * n`: its items, and the characters and items its copies hold."""
    if _size(seq) and isinstance(n, int):
        if _size(seq) * n > MAX_RESULT:
            raise SecurityError(f"a repetition of more than {MAX_RESULT} items is not allowed")
        if n > 1 and weight(seq, MAX_VALUE // n + 1) * n > MAX_VALUE:
            raise OverBudget(f"a repetition of more than {MAX_VALUE} characters and items is not allowed")


def _huge(base: float, exponent: float) -> bool:
    """A power whose result would be too long to compute or show: at most 64 digits' worth."""
    return abs(exponent) > 64 or (abs(base) > 1 and abs(exponent) * max(len(str(int(abs(base)))), 1) > 64)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


# -- str.format ------------------------------------------------------------------------------
class _Bounded:
    """A str.format formatter that checks each field: its width once nested fields are filled in
    (`'{:>{}}'.format('x', 10**9)`), the text of its value, and all it has made so far."""

    made_so_far = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        check_weight(value)  # `!r` and `!s` write the value out before format_field sees it
        return super().convert_field(value, conversion)  # type: ignore[misc]

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_widths(format_spec)
        check_weight(value)
        text = super().format_field(value, format_spec)  # type: ignore[misc]
        self.made_so_far += len(text)
        if self.made_so_far > MAX_VALUE:
            raise OverBudget(f"a format longer than {MAX_VALUE} characters is not allowed")
        return text


class _BoundedFormatter(_Bounded, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_Bounded, SandboxedEscapeFormatter):
    pass


def wrap_str_format(env: Any, value: Any) -> Callable[..., str] | None:
    """Jinja's SandboxedEnvironment.wrap_str_format, with the bounded formatter."""
    owner = _formatted_text(value)
    if owner is None:
        return None
    check_widths(owner)
    is_format_map = value.__name__ == "format_map"

    def wrapper(*args: Any, **kwargs: Any) -> str:
        spend()
        return _bounded_format(env, owner, is_format_map, args, kwargs)

    return update_wrapper(wrapper, value)


def _formatted_text(value: Any) -> str | None:
    """The string whose `format` or `format_map` method `value` is, else None."""
    if not isinstance(value, (types.MethodType, types.BuiltinMethodType)):
        return None
    if value.__name__ not in ("format", "format_map"):
        return None
    owner = value.__self__
    return owner if isinstance(owner, str) else None


def _bounded_format(env: Any, owner: str, is_format_map: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    formatter: SandboxedFormatter = (_BoundedEscapeFormatter(env, escape=owner.escape) if isinstance(owner, Markup)
                                     else _BoundedFormatter(env))
    if is_format_map:
        return str(made(type(owner)(formatter.vformat(owner, (), _format_map_argument(args, kwargs)))))
    return str(made(type(owner)(formatter.vformat(owner, args, kwargs))))


def _format_map_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
    if kwargs:
        raise TypeError("format_map() takes no keyword arguments")
    if len(args) != 1:
        raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
    mapping: Mapping[str, Any] = args[0]
    return mapping


# -- filters and tests -----------------------------------------------------------------------
def _argument(rest: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    return rest[index] if len(rest) > index else kwargs.get(name, default)


def _check_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The filters that can make far more than they are given, by their arguments."""
    check = _FILTER_CHECKS.get(name)
    if check is not None:
        check(name, value, rest, kwargs)


def _check_width_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _argument(rest, kwargs, 0, "width", 0)
    if isinstance(width, int) and width > MAX_RESULT:
        raise too_big(f"the {name} filter this wide is not allowed")
    if isinstance(width, str) and isinstance(value, str) and len(width) * (value.count("\n") + 1) > MAX_VALUE:
        raise too_big("the indent filter this wide is not allowed")


def _check_wordwrap(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _argument(rest, kwargs, 0, "width", 79)
    wrap = _argument(rest, kwargs, 2, "wrapstring", "\n") or "\n"
    if (isinstance(width, int) and isinstance(wrap, str) and isinstance(value, str)
            and len(wrap) * (len(value) // max(width, 1) + value.count("\n") + 1) > MAX_VALUE):
        raise too_big("the wordwrap filter this narrow is not allowed")


def _check_format_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if isinstance(value, str):
        check_printf(value, kwargs or rest)


def _check_replace_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(rest) >= 2 and isinstance(value, str):
        str_call_args(value, "replace", rest[:2], {})


def _check_lists_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    count = _argument(rest, kwargs, 0, "linecount" if name == "batch" else "slices", 0)
    if isinstance(count, int) and count > MAX_RESULT:
        raise too_big(f"the {name} filter making this many lists is not allowed")


def _check_sum_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    start = _argument(rest, kwargs, 1, "start", 0)
    if not isinstance(start, (int, float)):
        raise SecurityError("the sum filter adds numbers: its start must be a number")


def _check_tojson_filter(name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    indent = _argument(rest, kwargs, 0, "indent", None)
    if isinstance(indent, int) and weight(value) * (abs(indent) + 1) > MAX_VALUE:
        raise too_big("the tojson filter this indented is not allowed")


_FilterCheck = Callable[[str, Any, tuple[Any, ...], dict[str, Any]], None]
_FILTER_CHECKS: dict[str, _FilterCheck] = {
    "center": _check_width_filter, "indent": _check_width_filter, "wordwrap": _check_wordwrap,
    "format": _check_format_filter, "replace": _check_replace_filter, "batch": _check_lists_filter,
    "slice": _check_lists_filter, "sum": _check_sum_filter, "tojson": _check_tojson_filter,
}


def _join(original: Callable[..., Any]) -> Callable[..., Any]:
    """The join filter, measuring what it will make first: its items (or the attributes it
    joins), pulled and weighed, shared items counted at every place."""
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = pulled(value)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        return original(eval_ctx, _measured_join(items, str(d)), d)

    return join


def _weigh_arguments(arguments: tuple[Any, ...]) -> None:
    for argument in arguments:
        if not isinstance(argument, (Iterator, str)):  # an iterator is pulled and weighed by join
            check_weight(argument)


def guarded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """`original`, spending a step, checked before it runs and counted after."""
    pass_arg = _PassArg.from_obj(original)
    lead = 0 if pass_arg is None else 1  # the context, eval context or environment Jinja passes first
    run = _join(original) if name == "join" else original
    weighed = name not in STRUCTURAL_FILTERS and name != "join"  # join weighs what it joins itself

    def guarded(*args: Any, **kwargs: Any) -> Any:
        spend()
        value, rest = (args[lead], args[lead + 1:]) if len(args) > lead else (None, ())
        if weighed:
            _weigh_arguments((value, *rest, *kwargs.values()))
        _check_filter(name, value, rest, kwargs)
        return made(run(*args, **kwargs))

    if pass_arg is not None:
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    guarded.__name__ = getattr(original, "__name__", name)
    return guarded


def guarded_test(original: Any) -> Callable[..., Any]:
    """`original` (a Jinja test), spending a step."""
    pass_arg = _PassArg.from_obj(original)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        spend()
        return original(*args, **kwargs)

    if pass_arg is not None:
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def loop_turns(iterable: Iterable[Any]) -> Iterator[Any]:
    """What a `for` loop iterates, a step spent on each turn (added to every loop by the
    expressions module: a rule cannot name this filter)."""
    for item in iterable:
        spend()
        yield item


def concat(parts: list[Any]) -> str:
    """The `~` operator, its parts weighed before they are written out (added in its place by
    the expressions module)."""
    spend()
    size = 0
    for part in parts:
        size += len(part) if isinstance(part, str) else weight(part, MAX_VALUE - size)
        if size > MAX_VALUE:
            raise OverBudget(f"a value larger than {MAX_VALUE} characters is not allowed")
    text: str = made("".join(map(str, parts)))
    return text
