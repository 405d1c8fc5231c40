"""The heart of the engine: one event and `now` in, the decisions it causes out.

Decisions are data: cancel the pending sends of a rule with a key, schedule a send (or
record it skipped, with the reason), add an item to a digest. The live engine writes them to
its store in one transaction; `engine preview` applies them to a timeline in memory. Both run
this very function.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from ..rules import expressions
from ..rules.model import Config, Notification, Schedule, Totals
from .events import Event
from .matching import app_context, cancelled, condition_holds, context, read_path, rescheduled, triggered
from .policy import expired
from .rendering import Rendered, RenderError, UnsubscribeLinker, render
from .timing import When, digest_period, in_window, next_opening, recipient_zone, send_time


@dataclass(frozen=True)
class Cancel:
    """Cancel every pending send of `notification` whose key is `key`."""

    notification: str
    key: str
    reason: str
    event_id: str


@dataclass(frozen=True)
class Send:
    """A send to schedule at `send_at`, or to record as skipped (`status`, `reason`)."""

    notification: str
    recipient: Mapping[str, Any]
    event_id: str
    send_at: datetime
    status: Literal["scheduled", "skipped"]
    reason: str | None
    channels: tuple[str, ...]
    category: str
    key: str | None = None
    template_key: str | None = None
    template: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""
    throttle_key: str | None = None
    variant: str | None = None  # the A/B variant, for rules that declare variants
    # Planned by a reschedule: the store drops it when the key's sends were cancelled by a
    # cancel_on event (a cancelled booking that is then moved does not come back to life).
    replan: bool = False
    # When it is really due: earlier than `send_at` for an event that came after its send's time
    # and is sent at once (`if_past: send_now`). Its `expires_after` counts from here. None: `send_at`.
    due_at: datetime | None = None

    @property
    def due(self) -> datetime:
        return self.due_at or self.send_at

    @property
    def recipient_id(self) -> str:
        return str(self.recipient.get("id", ""))


@dataclass(frozen=True)
class DigestItem:
    """One event collected into a recipient's digest for a period."""

    notification: str
    recipient: Mapping[str, Any]
    event_id: str
    bucket: str  # notification:recipient:period start (local date)
    period_start: datetime
    period_end: datetime
    send_at: datetime
    item: Mapping[str, Any]
    channels: tuple[str, ...]
    category: str
    # A batch's: what every bucket of this recipient and batch key starts with. The store adds the
    # item to the one still collecting (not yet due at the item's time), or opens `bucket`.
    batch: str | None = None

    @property
    def recipient_id(self) -> str:
        return str(self.recipient.get("id", ""))


Decision = Cancel | Send | DigestItem
CANCELLED_BY = "cancelled by "  # the reason prefix of a cancel_on cancel (a reschedule says "rescheduled by")


@dataclass(frozen=True)
class Renderer:
    """What rendering needs beyond the rules: the environment and its optional signer."""

    env: str = "production"
    environ: Mapping[str, str] = field(default_factory=dict)
    unsubscribe: UnsubscribeLinker | None = None


def decide(config: Config, event: Event, now: datetime, renderer: Renderer = Renderer()) -> list[Decision]:
    """Every decision `event` causes at `now`: cancels first, then new sends and digest items."""
    decisions: list[Decision] = [Cancel(hit.rule.id, hit.key, f"{CANCELLED_BY}{event.type}", event.id)
                                 for hit in cancelled(config, event)]
    moved = list(rescheduled(config, event))
    decisions += [Cancel(hit.rule.id, hit.key, f"rescheduled by {event.type}", event.id) for hit in moved]
    for rule in triggered(config, event):
        decisions += plan(config, rule, event, now, renderer)
    for hit in moved:
        decisions += [replace(d, replan=True) if isinstance(d, Send) else d
                      for d in plan(config, hit.rule, event, now, renderer)]
    return decisions


def plan(config: Config, rule: Notification, event: Event, now: datetime, renderer: Renderer,
         at: datetime | None = None) -> list[Decision]:
    """The send (or digest item) one rule makes of one event, if its condition holds; `at`, when
    given, is the send time instead of the rule's schedule (a send the application times itself)."""
    recipient = _recipient(event, rule)
    if recipient is None:
        return [_failed(config, rule, event, now, {}, f"no recipient at {rule.audience!r}")]
    try:
        if not condition_holds(config, rule, event, recipient):
            return []
    except expressions.ExpressionError as exc:
        return [_failed(config, rule, event, now, recipient, f"condition failed: {exc}")]
    return [_decision(config, rule, event, now, renderer, recipient, at)]


def _recipient(event: Event, rule: Notification) -> dict[str, Any] | None:
    try:
        return dict(read_path(event.data, rule.audience))
    except (KeyError, TypeError, ValueError):
        return None


def _decision(config: Config, rule: Notification, event: Event, now: datetime, renderer: Renderer,
              recipient: dict[str, Any], at: datetime | None) -> Decision:
    tz = recipient_zone(recipient, config.timezone)
    if rule.batch:
        return _batch_item(config, rule, event, recipient, tz)
    if rule.digest:
        return _digest_item(rule, event, recipient, tz)
    return _send(config, rule, event, now, renderer, recipient, tz, at)


def _digest_item(rule: Notification, event: Event, recipient: Mapping[str, Any], tz: Any) -> DigestItem:
    assert rule.digest is not None
    period = digest_period(rule.digest, event.occurred_at, tz)
    bucket = f"{rule.id}:{recipient.get('id')}:{period.start.date().isoformat()}"
    return DigestItem(rule.id, recipient, event.id, bucket, period.start, period.end, period.send_at, event.data,
                      rule.channels, rule.category)


def _send(config: Config, rule: Notification, event: Event, now: datetime, renderer: Renderer,
          recipient: dict[str, Any], tz: Any, at: datetime | None) -> Send:
    ctx = context(config, rule, event, recipient)
    when, due = _when(rule, event, now, tz, at)
    key = str(read_path(event.data, rule.key)) if rule.key else None
    try:
        rendered = render(config, rule, ctx, recipient, renderer.env, renderer.environ, renderer.unsubscribe)
        throttle_key = str(expressions.render(rule.throttle.key, ctx)) if rule.throttle else None
    except (RenderError, expressions.ExpressionError) as exc:
        return _failed(config, rule, event, when.at, recipient, f"render failed: {exc}", key)
    return Send(rule.id, recipient, event.id, when.at, "skipped" if when.skip else "scheduled", when.skip,
                rule.channels, rule.category, key, rendered.template_key, rendered.template, rendered.data,
                rendered.idempotency_key, throttle_key, rendered.variant, due_at=due)


def _when(rule: Notification, event: Event, now: datetime, tz: Any, at: datetime | None) -> tuple[When, datetime]:
    """When a send goes out (or why it is skipped), and when it is really due (see Send.due_at)."""
    when = send_time(rule.schedule, event, tz, now) if at is None else When(at.astimezone(UTC))
    due = when.at if at is not None else _due(rule, event, now, tz, when)
    too_late = not when.skip and expired(rule, due, now)  # due so long ago that sending it now would be too late
    return (When(due, "expired") if too_late else when), due


def _due(rule: Notification, event: Event, now: datetime, tz: Any, when: When) -> datetime:
    """When a send the schedule times at `now` was due: perhaps earlier, pulled to now from a time already past."""
    if when.skip or when.at != now:
        return when.at
    return send_time(_skipping(rule.schedule), event, tz, now).at


@functools.lru_cache(maxsize=4096)
def _skipping(schedule: Schedule) -> Schedule:
    """`schedule`, a time already past skipped; made once per schedule, as `replace` checks and
    copies every field, which costs more than the rest of timing a send."""
    return replace(schedule, if_past="skip")


def _failed(config: Config, rule: Notification, event: Event, at: datetime, recipient: Mapping[str, Any],
            reason: str, key: str | None = None) -> Send:
    return Send(rule.id, recipient, event.id, at, "skipped", reason, rule.channels, rule.category, key,
                idempotency_key=f"{rule.id}:{recipient.get('id', '')}:{event.id}")


def batch_prefix(rule: Notification, recipient_id: str, key: str) -> str:
    """What the buckets of one recipient's batches under one key start with (the key hashed: it
    is event data, of any length)."""
    return f"{rule.id}:{recipient_id}:{hashlib.sha256(key.encode()).hexdigest()[:24]}@"


def batch_opening(rule: Notification, opened: datetime, tz: Any) -> tuple[datetime, datetime]:
    """(the end of a batch opened at `opened`, its send time): the window after its first event,
    then the rule's send window (quiet hours) if that time falls outside it."""
    assert rule.batch is not None
    end, window = (opened + rule.batch.window).astimezone(UTC), rule.schedule.window
    return end, next_opening(end, window, tz) if window and not in_window(end, window, tz) else end


def _batch_item(config: Config, rule: Notification, event: Event, recipient: Mapping[str, Any], tz: Any) -> Decision:
    assert rule.batch is not None
    try:
        key = str(expressions.render(rule.batch.key, context(config, rule, event, dict(recipient))))
    except expressions.ExpressionError as exc:
        return _failed(config, rule, event, event.occurred_at, recipient, f"render failed: batch.key: {exc}")
    return _batch_opened(rule, event, recipient, tz, key)


def _batch_opened(rule: Notification, event: Event, recipient: Mapping[str, Any], tz: Any, key: str) -> DigestItem:
    prefix = batch_prefix(rule, str(recipient.get("id", "")), key)
    opened = event.occurred_at.astimezone(UTC)
    end, send_at = batch_opening(rule, opened, tz)
    return DigestItem(rule.id, recipient, event.id, f"{prefix}{opened.isoformat()}", opened, end, send_at,
                      event.data, rule.channels, rule.category, batch=prefix)


def batch_send(config: Config, rule: Notification, recipient: Mapping[str, Any], items: list[Mapping[str, Any]],
               period_start: datetime, send_at: datetime, renderer: Renderer = Renderer()) -> Send:
    """The one send a batch makes when its window closes: rendered from its latest event, with
    `items` (the latest `max_items` events' data, oldest first) and `count` (all of them)."""
    assert rule.batch is not None
    kept = list(items[-rule.batch.max_items:] if rule.batch.max_items else items)
    opened = period_start.astimezone(UTC).isoformat()
    ctx = _batch_context(config, rule, recipient, items, kept, opened)
    try:
        key = str(expressions.render(rule.batch.key, ctx))
        rendered = render(config, rule, ctx, recipient, renderer.env, renderer.environ, renderer.unsubscribe)
    except (RenderError, expressions.ExpressionError) as exc:
        return _unrendered(rule, recipient, send_at, f"{rule.id}:{recipient.get('id', '')}:batch:{opened}", exc)
    bucket = f"{batch_prefix(rule, str(recipient.get('id', '')), key)}{opened}"
    return _collected(rule, recipient, send_at, bucket, rendered, {"items": kept, "count": len(items), **rendered.data})


def _batch_context(config: Config, rule: Notification, recipient: Mapping[str, Any], items: list[Mapping[str, Any]],
                   kept: list[Mapping[str, Any]], opened: str) -> dict[str, Any]:
    latest: Mapping[str, Any] = items[-1] if items else {}
    event = {"id": f"batch:{opened}", "type": rule.triggers[0], "occurred_at": opened}
    return {"items": kept, "count": len(items), "event": event, "recipient": dict(recipient), "notification": rule.id,
            "app": app_context(config), **latest}


def digest_send(config: Config, rule: Notification, recipient: Mapping[str, Any], items: list[Mapping[str, Any]],
                period_start: datetime, period_end: datetime, send_at: datetime,
                renderer: Renderer = Renderer()) -> Send:
    """The one send a digest (or a batch) makes when its time comes, rendered from every collected item."""
    if rule.batch is not None:
        return batch_send(config, rule, recipient, items, period_start, send_at, renderer)
    key = f"{rule.id}:{recipient.get('id', '')}:{period_start.date().isoformat()}"
    ctx = _digest_context(config, rule, recipient, items, key, period_start, period_end)
    try:
        if rule.digest is not None and rule.digest.totals is not None:
            ctx["totals"] = totals(rule.digest.totals, items)
        rendered = render(config, rule, ctx, recipient, renderer.env, renderer.environ, renderer.unsubscribe)
    except RenderError as exc:
        return _unrendered(rule, recipient, send_at, key, exc)
    return _collected(rule, recipient, send_at, key, rendered, rendered.data)


def _digest_context(config: Config, rule: Notification, recipient: Mapping[str, Any], items: list[Mapping[str, Any]],
                    key: str, period_start: datetime, period_end: datetime) -> dict[str, Any]:
    event = {"id": key, "type": rule.triggers[0], "occurred_at": period_end.isoformat()}
    return {"items": list(items), "period_start": period_start.isoformat(), "period_end": period_end.isoformat(),
            "recipient": dict(recipient), "notification": rule.id, "event": event, "app": app_context(config)}


def _unrendered(rule: Notification, recipient: Mapping[str, Any], send_at: datetime, key: str, exc: Exception) -> Send:
    return Send(rule.id, recipient, "", send_at, "skipped", f"render failed: {exc}", rule.channels, rule.category, key,
                idempotency_key=key)


def _collected(rule: Notification, recipient: Mapping[str, Any], send_at: datetime, key: str, rendered: Rendered,
               data: dict[str, Any]) -> Send:
    """The send of a digest or a batch, under the rule's own idempotency key when it declares one;
    else under `key`, one per recipient and period."""
    declared = rule.idempotency_key != Notification.idempotency_key
    return Send(rule.id, recipient, "", send_at, "scheduled", None, rule.channels, rule.category, key,
                rendered.template_key, rendered.template, data, rendered.idempotency_key if declared else key,
                variant=rendered.variant)


def totals(spec: Totals, items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The items' amounts summed per currency, in the order the currencies first appear: amounts
    in different currencies are never added together. RenderError names an item that has no
    integer amount or no currency code."""
    found: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        amount, currency = _amount(spec, i, item)
        entry = found.setdefault(currency, {"currency": currency, "amount": 0, "count": 0})
        entry["amount"] += amount
        entry["count"] += 1
    return list(found.values())


def _amount(spec: Totals, i: int, item: Mapping[str, Any]) -> tuple[int, str]:
    """Item `i`'s amount and currency code (upper case)."""
    try:
        amount, currency = read_path(item, spec.amount), read_path(item, spec.currency)
    except (KeyError, TypeError, ValueError):
        raise RenderError(f"totals: item {i} has no {spec.amount!r} or no {spec.currency!r}") from None
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str) or not currency:
        raise RenderError(f"totals: item {i} has {spec.amount} {amount!r} and {spec.currency} {currency!r}; "
                          "an amount must be an integer (minor units) and a currency a code such as 'USD'")
    return amount, currency.upper()
