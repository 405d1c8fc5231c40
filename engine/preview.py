"""`engine preview`: the core on a virtual clock, with an in-memory timeline as its store.

Events are processed in `occurred_at` order; before each one, every send that fell due earlier
goes out (or is skipped by the send-time checks), exactly as the live engine would have done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from .core import policy
from .core.decide import CANCELLED_BY, Cancel, DigestItem, Renderer, Send, decide, digest_send
from .core.events import Event, EventRejected, parse_event
from .rules.model import Config
from .rules.timeparse import format_instant

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=timezone.utc)


@dataclass
class Row:
    send: Send
    status: str  # scheduled | sent | skipped | cancelled
    reason: str | None
    seq: int

    def sort_key(self) -> tuple[datetime, str, str, int]:
        return (self.send.send_at, self.send.notification, self.send.recipient_id, self.seq)

    def as_json(self) -> dict[str, Any]:
        status = self.status
        if status == "scheduled":
            status = "pending"
        s = self.send
        return {
            "notification": s.notification,
            "recipient": s.recipient_id,
            "channels": list(s.channels),
            "template": s.template,
            "send_at": format_instant(s.send_at),
            "status": status,
            "reason": self.reason,
            "idempotency_key": s.idempotency_key,
            "data": dict(s.data),
            "template_key": s.template_key,
            "variant": s.variant,
            "category": s.category,
            "key": s.key,
            "event": s.event_id or None,
        }


@dataclass
class DigestBucket:
    first: DigestItem
    items: list[Mapping[str, Any]] = field(default_factory=list)
    done: bool = False


@dataclass
class Rejected:
    line: int
    problems: list[tuple[str, str]]


class Timeline:
    """The preview's store: the same decisions the live store would record, in memory."""

    def __init__(self, config: Config, renderer: Renderer, preferences: Mapping[str, policy.Preferences]):
        self.config = config
        self.renderer = renderer
        self.preferences = preferences
        self.rows: list[Row] = []
        self.digests: dict[str, DigestBucket] = {}
        self.seen: set[str] = set()
        self.duplicates: list[str] = []

    def process(self, event: Event) -> None:
        self.advance(event.occurred_at)
        if event.id in self.seen:
            self.duplicates.append(event.id)
            return
        self.seen.add(event.id)
        for decision in decide(self.config, event, event.occurred_at, self.renderer):
            self.apply(decision)

    def apply(self, decision: Cancel | Send | DigestItem) -> None:
        if isinstance(decision, Cancel):
            for row in self.rows:
                if (row.status == "scheduled" and row.send.notification == decision.notification
                        and row.send.key == decision.key):
                    row.status, row.reason = "cancelled", decision.reason
        elif isinstance(decision, Send):
            if decision.replan and any(
                    r.send.notification == decision.notification and r.send.key == decision.key
                    and r.status == "cancelled" and (r.reason or "").startswith(CANCELLED_BY) for r in self.rows):
                return
            self.rows.append(Row(decision, decision.status, decision.reason, len(self.rows)))
        else:
            bucket = self.digests.setdefault(decision.bucket, DigestBucket(decision))
            if bucket.done:
                return  # the period's digest already went out; a late event cannot join it
            bucket.items.append(decision.item)

    def _digest_row(self, bucket: DigestBucket) -> None:
        rule = self.config.notifications[bucket.first.notification]
        send = digest_send(self.config, rule, bucket.first.recipient, bucket.items,
                           bucket.first.period_start, bucket.first.period_end,
                           bucket.first.send_at, self.renderer)
        self.rows.append(Row(send, send.status, send.reason, len(self.rows)))

    def _due_digests(self, until: datetime) -> None:
        for bucket in self.digests.values():
            if not bucket.done and bucket.first.send_at <= until:
                self._digest_row(bucket)
                bucket.done = True

    def pending_digests(self) -> None:
        """Digests still collecting when the clock stops are due after it: show them pending,
        rendered from what they hold so far."""
        for bucket in self.digests.values():
            if not bucket.done:
                self._digest_row(bucket)

    def advance(self, until: datetime) -> None:
        """Every send due at or before `until` goes out or is skipped, in time order."""
        self._due_digests(until)
        due = sorted((r for r in self.rows if r.status == "scheduled" and r.send.send_at <= until), key=Row.sort_key)
        for row in due:
            if row.status == "scheduled":
                self.fire(row)

    def fire(self, row: Row) -> None:
        s = row.send
        rule = self.config.notifications.get(s.notification)
        throttle = None
        if rule and rule.throttle:
            since = s.send_at - rule.throttle.window
            count = sum(1 for r in self.rows if r.status == "sent" and r.send.notification == s.notification
                        and r.send.recipient_id == s.recipient_id and r.send.throttle_key == s.throttle_key
                        and r.send.send_at > since)
            throttle = (count, rule.throttle.limit)
        rate = None
        if self.config.rate_limit:
            since = s.send_at - self.config.rate_limit.window
            rate = sum(1 for r in self.rows if r.status == "sent" and r.send.recipient_id == s.recipient_id
                       and policy.can_opt_out(self.config, r.send.category) and r.send.send_at > since)
        verdict = policy.check(self.config, s.notification, s.category, s.channels,
                               self.preferences.get(s.recipient_id, {}), throttle, rate)
        row.send = replace(s, channels=verdict.channels)
        row.status, row.reason = ("skipped", verdict.skip) if verdict.skip else ("sent", None)

    def outcomes(self) -> list[Row]:
        return sorted(self.rows, key=Row.sort_key)


@dataclass
class Result:
    rows: list[Row]
    rejected: list[Rejected]
    duplicates: list[str]
    until: datetime | None


def read_events(lines: Iterable[str]) -> tuple[list[tuple[int, Any]], list[Rejected]]:
    found, rejected = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            rejected.append(Rejected(number, [("$", f"not JSON: {exc.msg} (column {exc.colno})")]))
    return found, rejected


def run(config: Config, raw_events: list[tuple[int, Any]], until: datetime | None = None,
        renderer: Renderer = Renderer(), preferences: Mapping[str, policy.Preferences] | None = None) -> Result:
    """Process the events on a virtual clock; stop at `until` or when nothing is left pending."""
    events, rejected = [], []
    for number, raw in raw_events:
        try:
            events.append(parse_event(raw, config))
        except EventRejected as exc:
            rejected.append(Rejected(number, exc.problems))
    timeline = Timeline(config, renderer, preferences or {})
    for event in sorted(events, key=lambda e: e.occurred_at):
        if until is not None and event.occurred_at > until:
            break
        timeline.process(event)
    timeline.advance(until or FAR_FUTURE)
    timeline.pending_digests()
    return Result(timeline.outcomes(), rejected, timeline.duplicates, until)


