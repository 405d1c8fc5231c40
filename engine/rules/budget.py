"""What evaluating rule expressions may cost: steps, time, and the size of what it makes.

Rule files are untrusted, and an expression can pass validation and still cost seconds of CPU
or gigabytes when it meets real data (two nested loops over a list, a list repeated and then
joined). So the sandbox spends a step of the current budget on every operation it performs (a
loop turn, a call, a filter, a test, an operator) and checks the budget's deadline; counts every
string or collection an operation makes, against the size of one value and against all a
budget's renders make; and weighs a value before it is turned into text, a shared item counted
at each place it appears, as `str()` and JSON write it out.

Budgets nest: a send renders its data values within one budget, validation renders every
example within another, and each render has its own within what the enclosing one has left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

# Operations one render may perform: loop turns, calls, filters, tests and operators.
MAX_STEPS = 100_000
# Wall time one render may take; a rendering that passed validation takes well under 10 ms.
MAX_SECONDS = 0.5
# The largest value an operation may make, in characters or items (an event's body is at most
# 1 MiB, so its own values fit), and a value weighs when it is turned into text.
MAX_VALUE = 1_048_576
# All that one budget's operations may make, in characters and items.
MAX_MADE = 16 * MAX_VALUE
# Validation evaluates every rule's example and the parts of expressions that read no field:
# all of it within this time (5 000 notifications take about 2 s), however many rules try to
# spend their whole render budget.
VALIDATION_SECONDS = 60.0


class OverBudget(SecurityError):
    """An expression did more work, or made larger values, than a render may."""


@dataclass
class Budget:
    steps: int
    deadline: float
    made: int
    seconds: float  # for the messages
    what: str = "the expression"

    def spend(self, steps: int) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise OverBudget(f"{self.what} takes more than {MAX_STEPS} steps (loop turns, calls, filters, operators)")
        if time.monotonic() > self.deadline:
            raise OverBudget(f"{self.what} takes longer than {self.seconds:g} s")

    def make(self, size: int) -> None:
        self.made -= size
        if self.made < 0:
            raise OverBudget(f"{self.what} makes more than {MAX_MADE} characters and items in all")


_current = threading.local()


def _active() -> Budget | None:
    found: Budget | None = getattr(_current, "budget", None)
    return found


class budget:  # noqa: N801 - a context manager named as the function it stands for
    """`with budget():` bounds everything evaluated inside, within what an enclosing budget has
    left; what is spent inside is spent from that one too. (A class: a render opens one, and a
    generator-based context manager costs as much as a short render.)"""

    def __init__(self, steps: int = MAX_STEPS, seconds: float = MAX_SECONDS, made: int = MAX_MADE,
                 what: str = "the expression"):
        self.steps, self.seconds, self.made, self.what = steps, seconds, made, what
        self.outer: Budget | None = None
        self.start = (0, 0)

    def __enter__(self) -> Budget:
        outer = self.outer = _active()
        mine = self.mine = Budget(self.steps, time.monotonic() + self.seconds, self.made, self.seconds, self.what)
        if outer is not None:
            mine.steps, mine.made = min(mine.steps, outer.steps), min(mine.made, outer.made)
            if outer.deadline < mine.deadline:
                mine.deadline, mine.seconds, mine.what = outer.deadline, outer.seconds, outer.what
        self.start = (mine.steps, mine.made)
        _current.budget = mine
        return mine

    def __exit__(self, *exc: object) -> None:
        _current.budget = self.outer
        if self.outer is not None:
            self.outer.steps -= self.start[0] - self.mine.steps
            self.outer.made -= self.start[1] - self.mine.made


def validation() -> budget:
    """The budget all of one validation's evaluations share (see VALIDATION_SECONDS)."""
    return budget(steps=10**12, seconds=VALIDATION_SECONDS, made=10**15, what="evaluating the rules' expressions")


def spend(steps: int = 1) -> None:
    """Spend steps of the current budget (none outside a budget: code that is not a render)."""
    current = getattr(_current, "budget", None)
    if current is not None:
        current.spend(steps)


def made(value: Any) -> Any:
    """`value`, counted as made by an operation: refused when larger than MAX_VALUE, or when it
    takes the current budget past MAX_MADE."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        size = len(value)
        if size < _SMALL:
            return value
        if size > MAX_VALUE:
            raise OverBudget(f"a value larger than {MAX_VALUE} characters or items is not allowed")
        current = _active()
        if current is not None:
            current.make(size)
    return value


_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)
# Values smaller than this are not counted against MAX_MADE: each costs a step, so the steps of
# a render bound what they make in all (100 000 x 256) about as well, at a lookup less each.
_SMALL = 256


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """The characters of the strings and the items of the collections in `value`, each shared
    item counted at every place it appears (as text and JSON repeat it); counting stops as soon
    as it passes `limit`. A value that is neither (a number, an iterator) weighs 1."""
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        total += 1
        if isinstance(node, str):
            total += len(node)
        elif isinstance(node, Mapping):
            total += len(node)
            if total <= limit:
                stack.extend(node.keys())
                stack.extend(node.values())
        elif isinstance(node, _CONTAINERS):
            total += len(node)
            if total <= limit:
                stack.extend(node)
        if total > limit:
            return total
    return total


def check_weight(value: Any) -> None:
    """Refuse to turn `value` into text when the text would be larger than MAX_VALUE."""
    if not isinstance(value, (str, int, float, bool)) and value is not None and weight(value) > MAX_VALUE:
        raise OverBudget(f"a value larger than {MAX_VALUE} characters and items once written out is not allowed")
