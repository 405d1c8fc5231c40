"""One check for each block of a notification: each is given the raw block and what it is
checked against, and returns what it built (as far as it could) and its problems."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from .. import delivery_options, expressions
from ..model import Category, Digest, ExampleEvent, Match, Routing, Schedule, TemplateChoice, Throttle, Window
from ..timeparse import check_cron
from ..wording import did_you_mean, known
from ..yaml_source import Document
from .findings import Checked, Finding, read_duration, reporter, window
from .reads import EventReads

# The data every send has without a `data` entry for it.
COMMON_DATA = ("app_name", "frontend_url", "support_email", "user_name", "user_email")
SCHEDULE_FORMS = ("at", "after", "before", "cron")
# A text a rule evaluates: (place in the rule, text, rendered for a digest, an expression rather
# than a template, its role: "strict", "data" or "required"; see reads.expression_problems).
Text = tuple[tuple[str, ...], Any, bool, bool, str]
Delivery = tuple[tuple[str, ...], Routing, timedelta | None]  # channels, routing, expires_after


@dataclass(slots=True)  # not frozen: made once per rule, and a frozen dataclass is slow to make
class Draft:
    """The blocks of a rule that the checks of what it reads of its events need."""

    triggers: tuple[str, ...]
    key: Any
    schedule: Schedule
    digest: Digest | None
    reschedule_on: tuple[Match, ...]
    template: TemplateChoice
    required: set[str]  # the names in `requires`
    throttle: Throttle | None


def trigger(raw: Mapping[str, Any], events: Mapping[str, Any]) -> Checked[tuple[str, ...]]:
    """The events that trigger the rule: one name or a list of them, each declared."""
    named = raw.get("event", "")
    triggers = tuple(named) if isinstance(named, list) else (named,)
    found = []
    for i, name in enumerate(triggers):
        if name not in events:
            where = ("trigger", "event", i) if isinstance(named, list) else ("trigger", "event")
            found.append(Finding(where, f"unknown event {name!r}{did_you_mean(name, events)}{known(events)}"))
    return triggers, found


def category(raw: Mapping[str, Any], categories: Mapping[str, Category]) -> Checked[Any]:
    name = raw.get("category", "")
    if name in categories:
        return name, []
    said = f"unknown category {name!r}{did_you_mean(name, categories)}{known(categories)}"
    return name, [Finding(("category",), said, blocks=False)]


def schedule(raw: Mapping[str, Any], defaults: Mapping[str, Any], windows: Mapping[str, Window]) -> Checked[Schedule]:
    """When the rule sends: at once, after or before a time, or on a cron, within an optional window."""
    forms = [k for k in SCHEDULE_FORMS if k in raw]
    if_past = raw.get("if_past", defaults.get("if_past", "send_now"))
    chosen, found = _window(raw.get("window"), windows)
    common = {"if_past": if_past, "window": chosen, "outside_window": raw.get("outside_window", "defer")}
    if len(forms) != 1:
        return Schedule("once", **common), found + [Finding(("schedule",), _forms_said(forms))]
    kind, of = forms[0], raw.get("of")
    found += _of_problems(kind, of)
    if kind == "cron":
        return Schedule("cron", of=of, cron=raw["cron"], **common), found + _cron(("schedule", "cron"), raw["cron"])
    if kind == "at":
        return Schedule("once", **common), found
    offset = read_duration(("schedule", kind), raw[kind], found)
    return Schedule(kind, offset=offset, of=of, **common), found  # type: ignore[arg-type]


def _forms_said(forms: list[str]) -> str:
    if not forms:
        return "say when: one of at, after, before or cron"
    return f"use one of at, after, before or cron, not {' and '.join(forms)}"


def _of_problems(kind: str, of: Any) -> list[Finding]:
    """`of`, the time a schedule counts from: needed by `before`, meaningless with `at`."""
    if kind == "before" and not of:
        return [Finding(("schedule", "before"), "`before` needs `of`: the date-time field to count back from")]
    if kind == "at" and of:
        return [Finding(("schedule", "of"), "`of` goes with before, after or cron, not with `at: once`")]
    return []


def _window(raw: Any, windows: Mapping[str, Window]) -> Checked[Window | None]:
    """A schedule's window: the name of one of `windows`, or one of its own."""
    if isinstance(raw, str):
        named = windows.get(raw)
        if named is None:
            said = f"unknown window {raw!r}{did_you_mean(raw, windows)}{known(windows)}"
            return None, [Finding(("schedule", "window"), said)]
        return named, []
    if isinstance(raw, dict):
        own, why = window(raw)
        return own, [] if why is None else [Finding(("schedule", "window"), why, named=False)]
    return None, []


def _cron(path: tuple[Any, ...], expression: Any) -> list[Finding]:
    try:
        check_cron(expression)
    except ValueError as exc:
        return [Finding(path, str(exc))]
    return []


def quiet_hours(chosen: Schedule, name: Any, categories: Mapping[str, Category], quiet: Window | None) -> Schedule:
    """A send users can switch off waits out the quiet hours, unless its schedule has a window."""
    opt_out = categories[name].opt_out if name in categories else False
    if quiet and opt_out and chosen.window is None:
        return replace(chosen, window=Window(quiet.end, quiet.start), quiet_hours=True)
    return chosen


def digest(raw: Mapping[str, Any]) -> Checked[Digest | None]:
    """A digest collects the rule's sends over a period and sends them together on a cron."""
    if not raw.get("digest"):
        return None, []
    d = raw["digest"]
    collected = Digest(d["period"], d["send"], delivery_options.totals(d))
    found = _cron(("digest", "send"), d["send"])
    if raw.get("schedule"):
        found.append(Finding(("schedule",), "a digest is sent by digest.send; remove schedule"))
    return collected, found


def matches(raw: Mapping[str, Any], kind: str, triggers: tuple[str, ...], key: Any,
            reads: EventReads) -> Checked[tuple[Match, ...]]:
    """`cancel_on` or `reschedule_on`: other events, matched to the rule's sends on a key."""
    kept: list[Match] = []
    found: list[Finding] = []
    for i, m in enumerate(raw.get(kind) or []):
        event = m.get("event", "")
        refused = _unmatchable(kind, event, triggers, reads.events)
        if refused:
            found.append(Finding((kind, i, "event"), refused, blocks=False))
        else:
            found += _match(kind, i, event, m, triggers, key, reads)
            kept.append(Match(event, m.get("key", "")))
    return tuple(kept), found


def _unmatchable(kind: str, event: Any, triggers: tuple[str, ...], events: Mapping[str, Any]) -> str | None:
    """Why `kind` cannot match `event`: not declared, or the rule's own trigger."""
    if event not in events:
        return f"{kind}: unknown event {event!r}{did_you_mean(event, events)}{known(events)}"
    if event in triggers:
        return f"{kind}: {event!r} is this notification's own trigger; it would {kind.split('_')[0]} itself"
    return None


def _match(kind: str, i: int, event: str, m: Mapping[str, Any], triggers: tuple[str, ...], key: Any,
           reads: EventReads) -> list[Finding]:
    """The key event `event` (item `i` of `kind`) matches on: declared, required, and the id of the same thing."""
    where = (kind, i, "key")
    found = [] if key else [Finding((kind, i), f"{kind} needs the notification's `key` (the field its events match on)",
                                    blocks=False)]
    found += reads.path(where, event, m.get("key", ""), f"{kind} key", event_name=event)
    if key and isinstance(m.get("key"), str):
        for name in triggers:
            found += reads.match(where, kind, name, key, event, m["key"])
    return found


def template(raw: Any, templates: Mapping[str, Mapping[str, str]]) -> Checked[TemplateChoice]:
    """The template: one key, a selector and its cases, or weighted variants; each key in every environment."""
    found: list[Finding] = []
    if isinstance(raw, str):
        choice = TemplateChoice(key=raw)
    elif isinstance(raw, dict) and "variants" in raw:
        choice, found = _variants(raw["variants"] or {})
    elif isinstance(raw, dict):
        choice = TemplateChoice(select=raw.get("select"), cases=dict(raw.get("cases") or {}),
                                default=raw.get("default"))
    else:
        return TemplateChoice(), found
    return choice, found + _template_keys(choice, templates)


def _variants(raw: Mapping[str, Any]) -> Checked[TemplateChoice]:
    """Weighted variants, one of them at least with a weight."""
    variants = tuple((name, v["key"], int(v["weight"])) for name, v in raw.items())
    if sum(w for _, _, w in variants):
        return TemplateChoice(variants=variants), []
    return TemplateChoice(variants=variants), [
        Finding(("template", "variants"), "variant weights add up to 0: give at least one a weight")]


def _template_keys(choice: TemplateChoice, templates: Mapping[str, Mapping[str, str]]) -> list[Finding]:
    found = []
    for key in choice.keys() if templates else ():
        missing = [env for env, mapping in templates.items() if key not in mapping]
        files = ", templates_map/".join(e + ".yaml" for e in sorted(missing))
        if len(missing) == len(templates):
            every = {k for mapping in templates.values() for k in mapping}
            found.append(Finding(("template",), f"unknown template key {key!r}: add it to templates_map/{files}"
                                                f"{did_you_mean(key, every)}", blocks=False))
        elif missing:
            said = f"template key {key!r} is missing from templates_map/{files}"
            found.append(Finding(("template",), said, blocks=False))
    return found


def throttle(raw: Mapping[str, Any]) -> Checked[Throttle | None]:
    if not raw.get("throttle"):
        return None, []
    t, found = raw["throttle"], list[Finding]()
    limited = Throttle(t.get("key", "{{ recipient.id }}"), read_duration(("throttle", "window"), t["window"], found),
                       int(t.get("limit", 1)))
    return limited, found


def event_reads(raw: Mapping[str, Any], draft: Draft, reads: EventReads) -> list[Finding]:
    """Everything that reads the event, checked against each event the rule is planned from:
    every trigger, and every event that reschedules it."""
    sources = [t for t in draft.triggers if t in reads.events] + [m.event for m in draft.reschedule_on]
    data = raw.get("data") or {}
    found: list[Finding] = []
    for source in dict.fromkeys(sources):
        found += _reads_of(raw, draft, reads, data, source, source if len(sources) > 1 else None)
    return found


def _reads_of(raw: Mapping[str, Any], draft: Draft, reads: EventReads, data: Mapping[str, Any], source: str,
              on: str | None) -> list[Finding]:
    """What the rule reads of one event it is planned from: the fields it names, the template's
    cases, its expressions, and the values `requires` asks for."""
    found = _paths(raw, draft, reads, source, on)
    if draft.template.select and not draft.template.default:
        found += reads.cases(source, draft.template, on)
    for place, text, in_digest, bare, role in _expressions(raw, draft, data):
        found += reads.expression(place, text, source, in_digest, expression=bare, event_name=on, role=role)
    if draft.digest is None:
        for name in draft.required & set(data):
            found += reads.not_null(("data", name), data[name], source, on)
    return found


def _paths(raw: Mapping[str, Any], draft: Draft, reads: EventReads, source: str, on: str | None) -> list[Finding]:
    """The fields of the event the rule names as its audience, key, digest totals and schedule.of."""
    found = reads.path(("audience",), source, raw["audience"], "audience", person=True, event_name=on) \
        if "audience" in raw else []
    if draft.key:
        found += reads.path(("key",), source, draft.key, "key", event_name=on)
    totals = draft.digest.totals if draft.digest else None
    for name, path in (vars(totals).items() if totals else ()):
        found += reads.path(("digest", "totals", name), source, path, f"digest.totals.{name}", event_name=on)
    if draft.schedule.of:
        found += reads.path(("schedule", "of"), source, draft.schedule.of, "schedule.of", date_time=True, event_name=on)
    return found


def _expressions(raw: Mapping[str, Any], draft: Draft, data: Mapping[str, Any]) -> list[Text]:
    """Each text the rule evaluates, with how it is read."""
    condition = (raw.get("trigger") or {}).get("condition")
    in_digest = draft.digest is not None
    found: list[Text] = [(("trigger", "condition"), condition, False, True, "strict")] if condition else []
    if draft.template.select:
        found.append((("template", "select"), draft.template.select, False, True, "strict"))
    # A data value the template requires must render; any other may fail its one send.
    found += [(("data", name), value, in_digest, False, "required" if name in draft.required else "data")
              for name, value in data.items() if expressions.is_template(value)]
    if "idempotency_key" in raw:
        found.append((("idempotency_key",), raw["idempotency_key"], in_digest, False, "strict"))
    if draft.throttle and "key" in raw["throttle"]:
        found.append((("throttle", "key"), draft.throttle.key, False, False, "strict"))
    return found


def required(raw: Mapping[str, Any]) -> set[str]:
    """The names of the values the template requires."""
    return {name for name in raw.get("requires") or () if isinstance(name, str)}


def requires(raw: Mapping[str, Any]) -> list[Finding]:
    """Every value the template requires is given by a `data` entry or by every send."""
    data = raw.get("data") or {}
    provided = set(data) | set(COMMON_DATA) | {"unsubscribe_url"}
    return [Finding(("requires", i), f"the template requires {needed!r} but no `data` entry provides it"
                                      f"{did_you_mean(needed, data)}")
            for i, needed in enumerate(raw.get("requires") or []) if needed not in provided]


def delivery(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> Checked[Delivery]:
    """The channels a send goes out on, how Courier routes it, and how late it may still go."""
    channels = tuple(raw.get("channels") or defaults.get("channels") or ["email"])
    found: list[Finding] = []
    routing, expires_after = delivery_options.read(raw, channels, lambda p, v: read_duration(p, v, found),
                                                   reporter(found))
    return (channels, routing, expires_after), found


def example(raw: Mapping[str, Any], rule_id: str, triggers: tuple[str, ...],
            doc: Document) -> Checked[ExampleEvent | None]:
    """An example event of one of the triggers, planned by `engine validate`."""
    if not isinstance(raw.get("example"), dict):
        return None, []
    ex = raw["example"]
    event = ExampleEvent(str(ex.get("id") or f"evt_example_{rule_id}"), ex["type"], ex["occurred_at"], ex["data"],
                         doc.mark(("notifications", rule_id, "example")))
    if ex["type"] in triggers:
        return event, []
    return event, [Finding(("example", "type"), f"the example is a {ex['type']!r} event but the trigger is "
                                                f"{' or '.join(map(repr, triggers))}")]
