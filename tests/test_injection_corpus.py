"""Untrusted rule files: template-injection attempts are refused by `engine validate` with a
clear message, and refused again by the renderer at run time (a rule file that skipped
validation still cannot escape the sandbox or exhaust the machine)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.lint import check_all
from engine.rules import expressions

BASE = Path(__file__).parent / "fixtures" / "bad_configs" / "_valid_base"

# (expression as written in a rule's data, what the validator's message must say)
CORPUS = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "underscore"),
    ("{{ booking.__class__ }}", "underscore"),
    ("{{ booking['__class__'] }}", "underscore"),
    ("{{ self.__init__.__globals__ }}", "underscore"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "underscore"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "underscore"),
    ("{{ joiner.__init__.__globals__ }}", "underscore"),
    ("{{ namespace.__init__.__globals__ }}", "underscore"),
    ("{{ request|attr('application')|attr('__globals__') }}", "underscore"),
    ("{{ booking|attr('__class__') }}", "underscore"),
    ("{{ '{0.__class__}'.format(booking) }}", "underscore"),
    ("{{ '%s' % booking.__class__ }}", "underscore"),
    ("{{ 'a' * 100000000 }}", "sandbox"),
    ("{{ 'a' * (10 ** 9) }}", "sandbox"),
    ("{{ 9 ** 9 ** 9 }}", "sandbox"),
    ("{{ range(10 ** 9) | list }}", "range"),
    ("{{ 'a' | center(999999999) }}", "sandbox"),
    ("{{ 'x'.ljust(999999999) }}", "sandbox"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "macro"),
    ("{% set x = 1 %}{{ x }}", "set"),
    ("{% include 'x' %}", "include"),
    ("{% import 'x' as y %}", "import"),
    ("{% extends 'x' %}", "extends"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "more than 10000"),
    ("{{ config }}", "does not declare"),
    ("{{ self }}", "does not declare"),
    ("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", "expression"),
    ("{{ '" + "a" * 3000 + "' }}", "longer than 2000"),
]


def rule_with(tmp_path: Path, expression: str) -> Path:
    cfg = tmp_path / "cfg"
    shutil.copytree(BASE, cfg)
    rules = cfg / "rules" / "booking.yaml"
    quoted = expression.replace("'", "''")
    rules.write_text(rules.read_text().replace('      booking_id: "{{ booking.id }}"', f"      booking_id: '{quoted}'"))
    return cfg


@pytest.mark.parametrize("expression, says", CORPUS, ids=[f"attempt{i}" for i in range(len(CORPUS))])
def test_validate_refuses_it_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expression: str, says: str
) -> None:
    monkeypatch.chdir(rule_with(tmp_path, expression))
    _, problems = check_all("notifications.yaml")
    errors = [p for p in problems if p.severity == "error"]
    assert errors, f"accepted: {expression}"
    assert all(p.file == "rules/booking.yaml" for p in errors)
    assert any(says in p.message for p in errors), [p.message for p in errors]


CONTEXT = {"booking": {"id": "b1"}, "items": [1, 2]}


@pytest.mark.parametrize("expression, says", CORPUS, ids=[f"attempt{i}" for i in range(len(CORPUS))])
def test_the_renderer_refuses_it_again_at_run_time(expression: str, says: str) -> None:
    # No validation here: straight to the renderer, as a rule that bypassed CI would be.
    with pytest.raises(expressions.ExpressionError):
        expressions.render(expression, dict(CONTEXT))
