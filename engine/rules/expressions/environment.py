"""The sandbox every rule expression is compiled in: immutable, native values, each operation bounded.

Every loop turn, call and operator spends a step of the current budget (see budget), and what an
operation makes is weighed (see guards).
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeCodeGenerator, NativeTemplate
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .. import guards
from ..budget import made, spend
from . import filters
from .values import concat

# Filters the sandbox adds where a rule's expression has a loop or a `~`; a rule cannot write
# these names (a filter name has no space).
LOOP_FILTER = "rule loop"
CONCAT_FILTER = "rule concat"
# Rules need `range` and `dict`; the other globals only serve as gadgets in injection attempts.
GLOBALS = frozenset({"range", "dict"})


class RuleTemplate(NativeTemplate):
    """NativeTemplate.render calls NativeEnvironment.concat (which literal_eval's "123" into 123
    and "None" into None); render with the sandbox's own concat instead."""

    @functools.cached_property
    def _globals(self) -> dict[str, Any]:
        return dict(self.globals)

    # As Template.new_context, without walking the ChainMap of globals on every render (more than
    # half the cost of rendering a short expression); the sandbox's globals are set once.
    def new_context(self, vars: dict[str, Any] | None = None, shared: bool = False, locals: Any = None) -> Any:
        if shared or locals:
            return super().new_context(vars, shared, locals)
        names = {**self._globals, **(vars or {})}
        return self.environment.context_class(self.environment, names, self.name, self.blocks, globals=self._globals)

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
    concat = staticmethod(concat)
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


@functools.lru_cache(maxsize=1)
def sandbox() -> RuleSandbox:
    env = RuleSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update(local_time=filters.local_time, money=filters.money, iso=filters.iso)
    _guard(env)
    for name in set(env.globals) - GLOBALS:
        env.globals.pop(name)
    return env


def _guard(env: RuleSandbox) -> None:
    env.filters.update({name: guards.guarded_filter(name, original) for name, original in env.filters.items()})
    env.tests.update({name: guards.guarded_test(test) for name, test in env.tests.items()})
    env.filters.update({LOOP_FILTER: guards.loop_turns, CONCAT_FILTER: guards.concat})
