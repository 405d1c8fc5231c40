"""What goes wrong in an expression, said so that a rule author can act on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jinja2.exceptions import SecurityError, TemplateError

from ..guards import MAX_RESULT


class ExpressionError(Exception):
    """An expression cannot be compiled or rendered; the message says why."""


def bounded(value: Any) -> Any:
    """`value`, refused when it is a string longer than a result may be."""
    if isinstance(value, str) and len(value) > MAX_RESULT:
        raise ExpressionError(f"renders to more than {MAX_RESULT} characters")
    return value


def describe(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, TemplateError):
        return exc.message or str(exc)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def compiling() -> Iterator[None]:
    """Jinja's complaints while it parses or compiles, as ExpressionError."""
    try:
        yield
    except TemplateError as exc:
        raise ExpressionError(f"does not compile: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None


class reported:  # noqa: N801 - a context manager named as what it does
    """Whatever evaluating raises, as ExpressionError: the sandbox and user data can raise
    anything. (A class: a render opens one, and a generator-based one costs a short render.)"""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, ExpressionError):
            raise ExpressionError(describe(exc)) from None
