"""The expression language of rule files: Jinja2 in an immutable sandbox, with bounded work.

Rule files arrive through pull requests, so every expression is untrusted. It is compiled and
rendered only here, by an `ImmutableSandboxedEnvironment` with `StrictUndefined` (environment),
with size bounds on sources, results and every operation that can make something large (see
guards), and a budget of steps and time for each render (see budget): every loop turn, call,
filter, test and operator spends a step. Validation refuses what no data can make cheap (parse,
constants): a statement other than if/for, a recursive loop, a sum that does not add numbers,
and any part of an expression that reads no field and still breaks a bound (it is evaluated,
under the same bounds). It also reports the fields each expression reads (references) and how a
lone expression can be null (nullability).

The modules, in the order a source goes through them: parse (and audit), harden, compiling,
render (with lookups, its path without Jinja, and values, its output as JSON data).
"""

from .compiling import compile_template, is_template
from .errors import ExpressionError
from .nullability import Nullable, nullable
from .references import Reference, analyse
from .render import evaluate, render, render_data

__all__ = ["ExpressionError", "Nullable", "Reference", "analyse", "compile_template", "evaluate", "is_template",
           "nullable", "render", "render_data"]
