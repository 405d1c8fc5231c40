"""engine.rules.expressions: Jinja2 in an immutable sandbox, native types, bounded work."""

from __future__ import annotations

import pytest

from engine.rules import expressions
from engine.rules.expressions import ExpressionError, Reference, analyse, evaluate, render
from engine.rules.expressions.errors import bounded, describe
from engine.rules.expressions.lookups import Output, parts


# -- native types ------------------------------------------------------------------------------
@pytest.mark.parametrize("source, context, value", [
    ("{{ amount }}", {"amount": 8500}, 8500),
    ("{{ amount * 2 }}", {"amount": 8500}, 17000),
    ("{{ ratio }}", {"ratio": 0.85}, 0.85),
    ("{{ flag }}", {"flag": False}, False),
    ("{{ items | length }}", {"items": [1, 2, 3]}, 3),
    ("{{ items }}", {"items": [1, 2]}, [1, 2]),
    ("{{ booking }}", {"booking": {"id": "bk_1"}}, {"id": "bk_1"}),
    ("{{ x | default(none) }}", {}, None),
    ("{{ x if x is defined else none }}", {}, None),
])
def test_a_single_expression_keeps_its_type(source: str, context: dict, value: object) -> None:
    result = render(source, context)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize("text", ["123", "007", "+4915112345678", "None", "True", "[1, 2]", "1e3", "{'a': 1}"])
def test_strings_stay_strings(text: str) -> None:
    # Jinja's own native rendering would literal_eval these into numbers, None, lists...
    assert render("{{ value }}", {"value": text}) == text


@pytest.mark.parametrize("source, value", [
    ("{{ items | map(attribute='a') }}", [1, 2]),
    ("{{ items | map(attribute='a') | list }}", [1, 2]),
    ("{{ items | reverse | map(attribute='a') }}", [2, 1]),
    ("{{ range(3) }}", [0, 1, 2]),
    ("{{ (items | first).keys() }}", ["a"]),
    ("{{ items | first | tojson }}", '{"a": 1}'),
])
def test_iterators_become_lists_and_markup_plain_strings(source: str, value: object) -> None:
    # the payload is JSON: a generator or a Markup object must not slip into it
    result = render(source, {"items": [{"a": 1}, {"a": 2}]})
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize("source, message", [
    ("{{ range }}", "gives a function, which is not a JSON value"),
    ("{{ dict }}", "gives a type, which is not a JSON value"),
    ("{{ range(20000) }}", "gives more than 10000 items"),
])
def test_values_that_are_not_json_are_refused(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        render(source, {})


def test_anything_else_becomes_a_string() -> None:
    assert render("{{ amount }} ", {"amount": 5}) == "5 "
    assert render("#{{ n }}", {"n": 12}) == "#12"
    assert render("{{ a }}{{ b }}", {"a": 1, "b": 2}) == "12"
    assert render("{% if paid %}paid{% else %}open{% endif %}", {"paid": True}) == "paid"


def test_plain_values_are_taken_as_they_are() -> None:
    assert render("hello", {}) == "hello"
    assert render(42, {}) == 42
    assert render(None, {}) is None


def test_evaluate_a_bare_expression() -> None:
    assert evaluate("user.role == 'client'", {"user": {"role": "client"}}) is True
    assert evaluate("status", {"status": "approved"}) == "approved"
    assert evaluate("booking.meeting_url is defined", {"booking": {}}) is False


# -- strict undefined --------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["{{ missing }}", "{{ booking.colour }}", "{{ [missing] }}", "{{ {'a': missing} }}",
                                    "x{{ missing }}"])
def test_reading_an_absent_field_is_an_error(source: str) -> None:
    with pytest.raises(ExpressionError, match="is undefined|has no attribute 'colour'"):
        render(source, {"booking": {"id": "bk_1"}})


@pytest.mark.parametrize("source", ["missing", "booking.colour", "booking.colour == 'red'"])
def test_evaluating_an_absent_field_is_an_error(source: str) -> None:
    with pytest.raises(ExpressionError, match="is undefined|has no attribute 'colour'"):
        evaluate(source, {"booking": {"id": "bk_1"}})


# -- the sandbox -------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ x.__init__.__globals__ }}",
    "{{ ''.format.__self__ }}",
])
def test_attribute_escapes_are_refused_before_rendering(source: str) -> None:
    with pytest.raises(ExpressionError, match="names starting with an underscore are not allowed"):
        render(source, {"x": object()})


@pytest.mark.parametrize("source", [
    "{{ x | attr('__class__') }}",
    "{{ '{0.__class__}'.format(x) }}",
    "{{ x['__cla' ~ 'ss__'] }}",
    "{{ [x] | map(attribute='__class__') | list }}",
    "{{ [x] | sort(attribute='a.__class__') }}",
    "{{ [x] | selectattr('__class__') | list }}",
    # In a branch no example reaches: the audit walks every branch of every node.
    "{{ (''|attr('__class__')) if user.name == 'Evil' else 'x' }}",
    "{{ user.name == 'Evil' and (''|attr('__class__')) }}",
    "{{ user.name | default(''|attr('__class__')) }}",
    "{% if user.name == 'Evil' %}{{ '{0.__class__}'.format(user) }}{% endif %}",
])
def test_attribute_names_in_strings_are_refused_before_rendering(source: str) -> None:
    with pytest.raises(ExpressionError, match="names starting with an underscore are not allowed"):
        analyse(source, expression=False)


@pytest.mark.parametrize("source, message", [
    ("{{ x.append(1) if user.name == 'Evil' else 'x' }}", "'append\\(\\)' changes a value"),
    ("{{ user.update(a=1) }}", "'update\\(\\)' changes a value"),
    ("{{ x.gi_frame }}", "'gi_frame' is refused by the sandbox"),
])
def test_other_sandbox_refusals_are_found_before_rendering(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        analyse(source, expression=False)


@pytest.mark.parametrize("source", ["{{ x | attr(name) }}", "{{ pattern.format(x) }}"])
def test_the_sandbox_refuses_escapes_the_audit_cannot_see(source: str) -> None:
    # The name comes from the data: only the sandbox, when it renders, can refuse it.
    with pytest.raises(ExpressionError, match="refused by the sandbox|has no attribute"):
        render(source, {"x": object(), "name": "__class__", "pattern": "{0.__class__}"})


def test_escapes_in_bare_expressions_are_refused() -> None:
    with pytest.raises(ExpressionError, match="names starting with an underscore are not allowed"):
        evaluate("''.__class__", {})


def test_the_sandbox_is_immutable() -> None:
    data = {"items": [1], "d": {}}
    # Method names from the data: the audit refuses `items.append(2)` itself.
    with pytest.raises(ExpressionError, match="refused by the sandbox"):
        render("{{ items[m](2) }}", {**data, "m": "append"})
    with pytest.raises(ExpressionError, match="refused by the sandbox"):
        render("{{ d[m](a=1) }}", {**data, "m": "update"})
    assert data == {"items": [1], "d": {}}


@pytest.mark.parametrize("source, message", [
    ("{{ 'a' * 10**8 }}", "refused by the sandbox: a repetition of more than 10000 items"),
    ("{{ 10**8 * 'a' }}", "refused by the sandbox: a repetition of more than 10000 items"),
    ("{{ [0] * 100001 }}", "refused by the sandbox: a repetition of more than 10000 items"),
    ("{{ 2 ** 100000 }}", "refused by the sandbox: a power this large is not allowed"),
    ("{{ 10 ** 10 ** 10 }}", "refused by the sandbox: a power this large is not allowed"),
    ("{{ ('a' * 6000) + ('b' * 6000) }}", "refused by the sandbox: a result longer than 10000"),
    ("{{ range(10**9) | list }}", "Range too big"),
    ("{{ range(10**9) | length }}", "Range too big"),
])
def test_work_is_bounded(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace("*", r"\*")):
        render(source, {})


def test_small_repetitions_and_powers_are_fine() -> None:
    assert render("{{ '-' * 20 }}", {}) == "-" * 20
    assert render("{{ 2 ** 10 }}", {}) == 1024
    assert render("{{ range(3) | list }}", {}) == [0, 1, 2]


def test_a_rendered_value_is_at_most_10000_characters() -> None:
    assert len(render("{{ 'a' * 10000 }}", {})) == 10_000
    with pytest.raises(ExpressionError, match="renders to more than 10000 characters"):
        render("{{ 'a' * 10000 }}!", {})
    with pytest.raises(ExpressionError, match="renders to more than 10000 characters"):
        render("{% for i in range(20000) %}x{% endfor %}", {})
    with pytest.raises(ExpressionError, match="renders to more than 10000 characters"):
        render("{{ text }}", {"text": "b" * 10_001})


def test_a_loop_stops_as_soon_as_its_output_is_too_long() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ExpressionError, match="renders to more than 10000 characters"):
            render("{% for i in range(3000) %}{{ 'a' * 1000 }}{% endfor %}", {})  # 3 MB if built first
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_an_expression_is_at_most_2000_characters() -> None:
    long = "{{ '" + "a" * 2000 + "' }}"
    with pytest.raises(ExpressionError, match="expression longer than 2000 characters"):
        render(long, {})
    with pytest.raises(ExpressionError, match="expression longer than 2000 characters"):
        analyse(long, expression=False)


# -- static analysis (what `engine validate` checks) --------------------------------------------
def test_analyse_lists_the_fields_read() -> None:
    assert list(analyse("booking.start_time | local_time(client.timezone)", expression=True)) == [
        Reference(("booking", "start_time")), Reference(("client", "timezone")),
    ]
    assert list(analyse("{{ booking['service']['name'] }}", expression=False)) == [
        Reference(("booking", "service", "name"))
    ]
    assert list(analyse("{{ items[0].payment.currency }}", expression=False)) == [
        Reference(("items", "payment", "currency"), index=True)
    ]
    # loop variables are local, the iterable is read
    assert list(analyse("{% for i in items %}{{ i.payment.id }}{% endfor %}", expression=False)) == [
        Reference(("items",))
    ]


@pytest.mark.parametrize("source, reads", [
    # `loop` and the targets are the loop's own in its body: only the iterable is an event read
    ("{% for t in totals %}{{ t.amount }}{% if not loop.last %}, {% endif %}{% endfor %}", [("totals",)]),
    ("{% for a, b in pairs %}{{ a }}{{ b.c }}{{ loop.index }}{% endfor %}", [("pairs",)]),
    ("{% for x in xs %}{% for y in x %}{{ loop.index }}{% endfor %}{{ loop.length }}{% endfor %}", [("xs",)]),
    ("{% for x in xs if x.ok %}{{ x }}{% endfor %}", [("xs",)]),
    # ...and nowhere else, as Jinja scopes them: there the same name reads the event
    ("{{ loop.index }}", [("loop", "index")]),
    ("{% for x in xs if loop.index > 1 %}{{ x }}{% endfor %}", [("xs",), ("loop", "index")]),
    ("{% for x in xs %}{% else %}{{ loop.index }}{{ x.y }}{% endfor %}", [("xs",), ("loop", "index"), ("x", "y")]),
    ("{% for x in xs %}{% endfor %}{{ x.y }}", [("xs",), ("x", "y")]),
    ("{% for booking in booking.sessions %}{{ booking.start }}{% endfor %}", [("booking", "sessions")]),
])
def test_what_a_loop_binds_is_not_an_event_read(source: str, reads: list[tuple[str, ...]]) -> None:
    assert [r.path for r in analyse(source, expression=False)] == reads


def test_a_loop_s_own_variables_render_as_jinja_gives_them() -> None:
    totals = [{"amount": 3000, "currency": "USD"}, {"amount": 2000, "currency": "JPY"}]
    source = "{% for t in totals %}{{ t.amount | money(t.currency) }}{% if not loop.last %}, {% endif %}{% endfor %}"
    assert render(source, {"totals": totals}) == "$30.00, ¥2,000"
    with pytest.raises(ExpressionError, match="'loop' is undefined"):  # what analyse reports as an event read
        render("{% for x in xs %}{% else %}{{ loop.index }}{% endfor %}", {"xs": []})


@pytest.mark.parametrize("source, statement", [
    ("{% macro hi() %}hi{% endmacro %}{{ hi() }}", "macro"),
    ("{% set x = 1 %}{{ x }}", "set"),
    ("{% set x %}a{% endset %}", "set"),
    ("{% include 'other' %}", "include"),
    ("{% import 'other' as o %}", "import"),
    ("{% from 'other' import o %}", "import"),
    ("{% extends 'base' %}", "extends"),
    ("{% block b %}{% endblock %}", "block"),
    ("{% call foo() %}{% endcall %}", "call"),
])
def test_statements_other_than_if_and_for_are_refused(source: str, statement: str) -> None:
    with pytest.raises(ExpressionError, match=f"the statement '{statement}' is not allowed in rule expressions"):
        analyse(source, expression=False)


def test_if_and_for_are_allowed() -> None:
    analyse("{% if a %}{% for x in b %}{{ x }}{% endfor %}{% endif %}", expression=False)


@pytest.mark.parametrize("source, name", [
    ("{{ ''.__class__ }}", "__class__"),
    ("{{ user._password }}", "_password"),
    ("{{ _secret }}", "_secret"),
    ("{{ user['_token'] }}", "_token"),
])
def test_names_starting_with_an_underscore_are_refused(source: str, name: str) -> None:
    with pytest.raises(ExpressionError, match=f"'{name}': names starting with an underscore are not allowed"):
        analyse(source, expression=False)


@pytest.mark.parametrize(
    "source, expression", [("{{ booking.id | }}", False), ("{{ x", False), ("a ==", True), ("a b", True)]
)
def test_what_does_not_compile_is_reported(source: str, expression: bool) -> None:
    with pytest.raises(ExpressionError, match="does not compile"):
        analyse(source, expression=expression)


# -- the engine's filters ----------------------------------------------------------------------
@pytest.mark.parametrize("amount, currency, text", [
    (1999, "USD", "$19.99"), (8500, "usd", "$85.00"), (123456, "EUR", "€1,234.56"), (1000, "JPY", "¥1,000"),
    (1234, "BHD", "1.234 BHD"), (123456, "SEK", "1,234.56 SEK"), (-50, "GBP", "-£0.50"), (0, "USD", "$0.00"),
])
def test_money(amount: int, currency: str, text: str) -> None:
    assert render("{{ amount | money(currency) }}", {"amount": amount, "currency": currency}) == text


def test_local_time_and_iso() -> None:
    ctx = {"t": "2026-03-08T10:00:00-04:00"}
    assert render("{{ t | local_time('Europe/Berlin') }}", ctx) == "Sunday 08 March 2026, 15:00"
    assert render("{{ t | local_time('America/New_York', '%H:%M %Z') }}", ctx) == "10:00 EDT"
    assert render("{{ t | local_time }}", ctx) == "Sunday 08 March 2026, 14:00"
    assert render("{{ t | iso }}", ctx) == "2026-03-08T14:00:00Z"
    with pytest.raises(ExpressionError):
        render("{{ t | local_time('UTC') }}", {"t": "2026-03-08 10:00"})  # no offset: refused


def test_compiled_templates_are_cached() -> None:
    assert expressions.compile_template("{{ a }}") is expressions.compile_template("{{ a }}")


@pytest.mark.parametrize("source", [
    "{{ 'a' | center(200000000) }}",
    "{{ 'a'.center(10**8) }}",
    "{{ 'a'.ljust(10**8) }}",
    "{{ '0'.zfill(10**8) }}",
    "{{ '%0200000000d' % 1 }}",
    "{{ '{:>200000000}'.format(1) }}",
    "{{ ('ab' * 4000).replace('a', 'xxxxxxxxxxxx') }}",
    "{{ 'x' | indent(100000000, true) }}",
    "{{ '%200000000s' | format('a') }}",
])
def test_width_and_growth_refused_before_allocating(source: str) -> None:
    with pytest.raises(expressions.ExpressionError, match="not allowed"):
        expressions.render(source, {})


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ 'hi' | center(6) }}", "  hi  "),
    ("{{ '%05d' % 3 }}", "00003"),
    ("{{ '{}-{}'.format(1, 2) }}", "1-2"),
    ("{{ 'a b' | replace('a', 'c') }}", "c b"),
])
def test_small_widths_still_work(source: str, expected: str) -> None:
    assert expressions.render(source, {}) == expected


LOOKUP_CONTEXT = {
    "booking": {"id": "bk_1", "service": {"name": "Yoga"}, "items": ["a"], "keys": 3, "tags": ["x"], "n": None,
                "when": {"nested": {"deep": True}}},
    "items": "top-level items",
    "name": "Ada",
    "big": "x" * 10_001,
    "fn": len,
    "range": "a data field named like a global",
    "none": "a data field named like a constant",
    "self": "a data field named like the template itself",
    "true": "a data field named like a constant",
    "half": "y" * 5_000,
    "at": "2026-03-01T09:30:00Z",
    "zone": "Europe/Paris",
}


@pytest.mark.parametrize("source", [
    "{{ booking.id }}", "{{booking.service.name}}", "{{ booking.items }}", "{{ booking.keys }}", "{{ booking.tags }}",
    "{{ booking.n }}", "{{ booking.when.nested.deep }}", "{{ booking.when }}", "{{ items }}", "{{ name.upper }}",
    "{{ booking.missing }}", "{{ missing }}", "{{ missing.id }}", "{{ booking.id.x }}", "{{ big }}", "{{ fn }}",
    "{{ range }}", "{{ dict }}", "{{ booking.service.name.title }}", "{{ none }}", "{{ self }}", "{{ true }}",
    "{{ booking.none }}",
    # plain lookups among plain text, as idempotency keys are written
    "{{ name }}:{{ booking.id }}:{{ booking.service.name }}", "x {{ booking.id }} y", "{{ booking.id }}{{ name }}",
    "#{{ booking.n }}", "{{ booking.when }} and {{ booking.tags }}", "{{ booking.when.nested.deep }}!",
    "{{ half }}{{ half }}", "{{ half }}{{ half }}.", "{{ big }}:{{ name }}", "a{{ booking.missing }}b",
    "{{ name }}-{{ missing }}", "{{ none }}-{{ name }}", "{{ self }}:{{ name }}", "{{ range }}:{{ dict }}",
    "{{ fn }}-x", "{{ booking.keys }}.", "{{ booking.items }}!", "{{ name.upper }}:", "{{ name }}\n",
    "{{ name }}\r\n{{ name }}", "{{- name }} x", "x {{ name -}} y", "{ {{ name }} }", "{{ name }}}",
    "{{ name }}{# a comment #}", "{{ name }} {% if true %}y{% endif %}", "{{ name }} {{ booking.id.x }}",
    "{% raw %}{{ name }}{% endraw %}", "{{ name }} {{ 'a' }}",
    # a lookup given to a filter of the engine's own, or to default
    "{{ booking.missing | default(none) }}", "{{ booking.n | default(none) }}", "{{ booking.id | d(none) }}",
    "{{ booking.missing | d }}", "{{ missing | default(none) }}", "{{ missing.id | default(none) }}",
    "{{ booking.items | default(none) }}", "{{ range | default(none) }}", "{{ dict | default(none) }}",
    "{{ booking.id.x | default(none) }}", "{{ booking.missing.x | default(none) }}", "{{ none | default(1) }}",
    "{{ booking.missing | default('x') }}", "{{ booking.missing | default(booking.id) }}",
    "{{ booking.missing | default(missing) }}", "a {{ booking.missing | default(none) }} b",
    "{{ booking.tags | length }}", "{{ name | length }}", "{{ booking.keys | money }}", "{{ name | money }}",
    "{{ booking.keys | money('EUR') }}", "{{ booking.keys | money(booking.missing) }}",
    "{{ booking.keys | money(name) }}", "{{ at | local_time }}", "{{ at | local_time(zone) }}",
    "{{ at | local_time(zone, '%A %d %B %Y') }}", "{{ at | local_time(booking.missing) }}",
    "{{ at | local_time('Nowhere/Else') }}", "{{ name | local_time }}", "{{ at | iso }}", "{{ at | iso }}:{{ name }}",
    "{{ big | length }}", "{{ big | default(none) }}", "{{ half | iso }}", "{{ name | upper }}",
    "{{ name | default(none, true) }}", "{{ at | local_time(tz=zone) }}",
])
def test_a_plain_lookup_gives_what_the_template_gives(source: str) -> None:
    # render() reads `{{ a.b.c }}` (alone or among plain text) from the context itself when each
    # step is a key of a dict; the result, or the error, must be the template's own.
    def outcome(run: object) -> object:
        try:
            return ("value", run())  # type: ignore[operator]
        except ExpressionError as exc:
            return ("error", str(exc))

    template = expressions.compile_template(source)
    assert outcome(lambda: render(source, LOOKUP_CONTEXT)) == outcome(
        lambda: bounded(_jinja(template, LOOKUP_CONTEXT)))


def test_the_templates_read_without_jinja() -> None:
    # Lookups, alone or given to the engine's filters, among text with no delimiter and no newline
    # in it; anything else is Jinja's.
    assert parts("{{ notification }}:{{ recipient.id }}:{{ event.id }}") == (
        Output(("notification",)), ":", Output(("recipient", "id")), ":", Output(("event", "id")))
    assert parts("{{ booking.id }}") == (Output(("booking", "id")),)
    assert parts("{{ b.at | local_time(c.tz, '%H') }}") == (Output(("b", "at"), "local_time", (("c", "tz"), "%H")),)
    assert parts("{{ b.url | default(none) }}") == (Output(("b", "url"), "default", (None,)),)
    for source in ("{{ name }}\n", "{{- name }} x", "{ {{ name }} }", "{{ name }}{# c #}", "{{ name | upper }}",
                   "{{ at | local_time(tz=zone) }}", "no lookup"):
        assert parts(source) is None, source


def _jinja(template: object, context: dict) -> object:
    try:
        return template.render(context)  # type: ignore[attr-defined]
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(describe(exc)) from None


# -- what guards a read, and how a value can be null --------------------------------------------
@pytest.mark.parametrize(
    "source, refs",
    [
        ("{{ b.url }}", [Reference(("b", "url"))]),
        ("{{ b.url | default(none) }}", [Reference(("b", "url"), lenient=True)]),
        (
            "{{ b.url if b.url is defined else none }}",
            [Reference(("b", "url"), lenient=True), Reference(("b", "url"), defined=2)],
        ),
        (
            "{{ 'x' if b.url is not defined else b.url }}",
            [Reference(("b", "url"), lenient=True), Reference(("b", "url"), defined=2)],
        ),
        (
            "{% if 'url' in b %}{{ b.url.host }}{% endif %}",
            [Reference(("b",)), Reference(("b", "url", "host"), defined=2)],
        ),
        ("{{ b.url is defined or b.url }}", [Reference(("b", "url"), lenient=True), Reference(("b", "url"))]),
    ],
)
def test_each_read_knows_what_guards_it(source: str, refs: list[Reference]) -> None:
    assert list(analyse(source, expression=False)) == refs


@pytest.mark.parametrize("source, why, paths", [
    ("{{ b.url | default(none) }}", "`| default(none)` gives null when the field is missing", ()),
    ("{{ b.url if b.ok else none }}", "it is none", (("b", "url"),)),
    ("{{ b.url if b.ok }}", "an `if` without `else` gives nothing when its test is false", ()),
    ("{{ b.url }}", None, (("b", "url"),)),
    ("{{ b.url | default('') }}", None, (("b", "url"),)),
])
def test_a_lone_expression_says_how_it_can_be_null(source: str, why: str | None, paths: tuple) -> None:
    found = expressions.nullable(source, expression=False)
    assert found is not None and (found.why, found.paths) == (why, paths)


@pytest.mark.parametrize("source", ["{{ b.url | upper }}", "Join: {{ b.url }}", "{{ 'x' }}"])
def test_a_value_that_cannot_be_null(source: str) -> None:
    assert expressions.nullable(source, expression=False) is None
