"""The live engine: the pure core wired to the store, the queue and a delivery backend.

`Runtime` is what `engine serve`, `engine worker`, the HTTP hook and the Python API share.
Every method takes `now`, so the same code runs under a test's clock.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from . import metrics
from .clock import utcnow
from .core import policy
from .core.decide import Renderer, Send, decide, digest_send, plan
from .core.events import MAX_ID, Event, EventRejected, parse_event
from .core.rendering import Delivery
from .core.timing import digest_period, recipient_zone
from .delivery import Backend, Outcome, backend_for
from .delivery.message import going_out, scheduled
from .delivery.outcomes import reported
from .rules.loader import load
from .rules.model import Config, Notification
from .settings import Settings, SettingsError
from .signing import make_unsubscribe_token
from .store.codec import Codec
from .store.db import connect, is_current, upgrade
from .store.repository import Claimed, IngestResult, Store

log = logging.getLogger("engine")


class SendRefused(ValueError):
    """A send asked for directly (`schedule`, `send_now`) that cannot be planned: an unknown
    notification or recipient, no data to render from, a condition that does not hold."""


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry `attempt` (1-based): exponential with jitter, capped at 10 minutes."""
    base = min(600.0, 2.0 ** (attempt - 1))
    delay = base * (0.5 + random.random() / 2)
    return max(delay, retry_after or 0.0)


def with_person(data: Mapping[str, Any], path: str, person: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `data` with `person` at the dotted `path`, over the fields the data gave that
    person (the mappings on the way are copied, not changed)."""
    head, _, rest = path.partition(".")
    out = dict(data)
    given = out.get(head)
    found: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    out[head] = with_person(found, rest, person) if rest else {**found, **person}
    return out


_Result = TypeVar("_Result", bound=IngestResult | Exception)


def _logged(result: _Result) -> _Result:
    if not isinstance(result, Exception):
        log.debug("ingested %d event(s), %d duplicate(s), %d send(s) scheduled, %d cancelled",
                  len(result.accepted), len(result.duplicates), result.scheduled, result.cancelled)
    return result


@dataclass
class Runtime:
    settings: Settings
    config: Config
    store: Store
    backend: Backend
    environ: Mapping[str, str] = field(default_factory=dict)
    enqueue: Callable[[int], None] | None = None  # hands an id to the queue; None: deliver inline

    @classmethod
    def create(cls, settings: Settings, environ: Mapping[str, str] | None = None, *, migrate: bool = True,
               backend: Backend | None = None) -> Runtime:
        config = load(settings.config_path)
        if settings.env not in config.templates:
            raise SettingsError(f"ENGINE_ENV={settings.env!r}: there is no templates_map/{settings.env}.yaml")
        engine = connect(settings.database_url)
        if migrate:
            upgrade(engine)
        elif not is_current(engine):
            raise SettingsError("ENGINE_DATABASE_URL: the database is not set up, or is older than this engine: "
                                "run `engine db upgrade`")
        store = Store(engine, Codec(settings.encryption_keys))
        return cls(settings, config, store, backend or backend_for(settings), dict(environ or {}))

    # -- rendering ------------------------------------------------------------------------------
    def renderer(self, now: datetime) -> Renderer:
        secret, base = self.settings.secret_key, self.settings.public_url
        if not secret:
            return Renderer(self.settings.env, self.environ, None)

        def linker(notification: str, recipient_id: str) -> str:
            return f"{base}/unsubscribe?token={make_unsubscribe_token(secret, recipient_id, notification, now)}"

        return Renderer(self.settings.env, self.environ, linker)

    # -- ingest ---------------------------------------------------------------------------------
    def parse(self, raw_events: list[Any]) -> list[Event]:
        """Every event checked; EventRejected lists the problems of all of them (JSON paths)."""
        parsed, problems = [], []
        single = len(raw_events) == 1
        for i, raw in enumerate(raw_events):
            try:
                parsed.append(parse_event(raw, self.config, "$" if single else f"$.events[{i}]"))
            except EventRejected as exc:
                problems.extend(exc.problems)
        if problems:
            raise EventRejected(problems)
        return parsed

    def ingest(self, raw_events: list[Any], now: datetime | None = None) -> IngestResult:
        """Check, decide and store events in one transaction (all or nothing)."""
        now = now or utcnow()
        events = self.parse(raw_events)
        renderer = self.renderer(now)
        return _logged(self.store.ingest([(e, decide(self.config, e, now, renderer)) for e in events], now))

    def ingest_many(self, batches: list[list[Event]], now: datetime | None = None) -> list[IngestResult | Exception]:
        """Decide and store several batches of checked events (`parse`), each all or nothing, in one
        transaction (`Store.ingest_many`): a batch whose deciding or writing fails gets its error in
        its place and changes nothing; the others are stored. An error of the transaction itself is
        raised."""
        now = now or utcnow()
        renderer = self.renderer(now)
        decided: list[Any] = []
        for events in batches:
            try:
                decided.append([(e, decide(self.config, e, now, renderer)) for e in events])
            except Exception as exc:  # noqa: BLE001 - that batch's error, not the others'
                log.exception("deciding a batch of %d event(s) failed", len(events))
                decided.append(exc)
        stored = iter(self.store.ingest_many([d for d in decided if not isinstance(d, Exception)], now))
        return [d if isinstance(d, Exception) else _logged(next(stored)) for d in decided]

    # -- the sweep: the database is the source of truth, the queue only carries "send N now" --------
    def sweep(self, now: datetime | None = None, *, on_time: bool = False) -> int:
        """Close the digests due by `now` and hand out the sends due by then; returns how many.

        `on_time` is the virtual clock of `engine preview`: each digest closes and each send is
        delivered at its own due time, as a sweep that never sleeps would have done it."""
        now = now or utcnow()
        for digest in self.store.due_digests(now):
            self.close_digest(digest, digest["send_at"] if on_time else now)
        # A queued row whose task was lost, or a claim whose worker died, is handed out again. Doing
        # it early is safe: a claim is atomic, and a second attempt carries the same Idempotency-Key.
        timeout = self.settings.courier_timeout
        due = self.store.queue_due_times(now, requeue_after=timedelta(seconds=max(5.0, 2 * timeout)),
                                         stale_sending=timedelta(seconds=2 * timeout + 5),
                                         max_attempts=self.settings.max_attempts)
        for notification_id, send_at in due:
            if self.enqueue is not None:
                self.enqueue(notification_id)
            else:
                self.deliver(notification_id, send_at if on_time else now)
        return len(due)

    def close_digest(self, digest: dict[str, Any], now: datetime) -> None:
        """Render a due digest from every item it collected and schedule its one send; a digest
        whose rule was removed meanwhile is closed without one."""
        send = self.digest_send(digest, now)
        if send is None:
            log.info("digest %s closed without a send: its notification was removed", digest["notification"])
        self.store.close_digest(digest["bucket"], send, now, items=len(digest["items"]))

    def digest_send(self, digest: dict[str, Any], now: datetime) -> Send | None:
        """The send a digest makes from what it holds (None when its rule is gone)."""
        rule = self.config.notifications.get(digest["notification"])
        if rule is None:
            return None
        # The store gives instants back in UTC; the core made the period in the recipient's zone, and
        # renders (and keys) the digest from it: hand it the same local times.
        tz = recipient_zone(digest["recipient"], self.config.timezone)
        start, end = digest["period_start"].astimezone(tz), digest["period_end"].astimezone(tz)
        return digest_send(self.config, rule, digest["recipient"], digest["items"], start, end, digest["send_at"],
                           self.renderer(now))

    # -- delivery -------------------------------------------------------------------------------
    def deliver(self, notification_id: int, now: datetime | None = None) -> str:
        """Claim one queued send and deliver it; returns the row's new status (or 'not claimed')."""
        start = now or utcnow()
        claimed, verdict = self.store.claim_checked(notification_id, start,
                                                    lambda c, counts: self._check(c, counts, start))
        if claimed is None:
            return "not claimed"
        if verdict.skip:
            return reported(claimed, "skipped", start, self.backend.name, why=verdict.skip)
        outcome = self._send(claimed, verdict, start)
        return self._record(claimed, verdict, outcome, now or utcnow())

    def _send(self, claimed: Claimed, verdict: policy.Verdict, now: datetime) -> Outcome:
        """The Courier request of a claimed send. A backend that raises (a bug) gives a retry: the
        row must not stay `sending` until a sweep finds it."""
        try:
            delivery = verdict.delivery or Delivery(verdict.channels, verdict.template)
            message = going_out(claimed.message, delivery, now)
            return self.backend.send(message, claimed.idempotency_key)
        except Exception as exc:  # noqa: BLE001 - see above
            log.exception("delivery backend raised for %s #%d", claimed.notification, claimed.id)
            return Outcome("retry", error=f"unexpected {type(exc).__name__}")

    def _record(self, claimed: Claimed, verdict: policy.Verdict, outcome: Outcome, done: datetime) -> str:
        """An attempt's outcome on its row (while the row is still this attempt's claim), reported."""
        if outcome.status == "paused":  # Courier refused the credentials, not this send: not an attempt
            resume_at = done + timedelta(seconds=outcome.retry_after or backoff(1))
            metrics.send_paused(claimed.notification)
            return self.store.pause(claimed, done, resume_at, outcome.error or "credentials rejected") or "not claimed"
        retry_at: datetime | None = None
        if outcome.status == "sent":
            recorded = self.store.finish(claimed, "sent", done, request_id=outcome.request_id)
        elif outcome.status == "retry" and claimed.attempts < self.settings.max_attempts:
            retry_at = done + timedelta(seconds=backoff(claimed.attempts, outcome.retry_after))
            recorded = self.store.finish(claimed, "scheduled", done, reason="retry", error=outcome.error,
                                         retry_at=retry_at)
        else:
            recorded = self.store.finish(claimed, "failed", done, reason=outcome.error, error=outcome.error)
        if recorded is None:
            return "not claimed"  # another worker took the row over (this claim went stale)
        why = outcome.error if recorded != "cancelled" else "cancelled while it was being sent"
        return reported(claimed, recorded, done, self.backend.name, template=verdict.template, outcome=outcome,
                        why=why, retry_at=retry_at)

    def _in_force(self, notification: str, template_key: str | None) -> tuple[str | None, str | None]:
        """(the Courier template id a send of `notification` goes out with under the rules in force,
        or None and why it does not go out: paused, removed, or its template key no longer mapped)."""
        ended = policy.in_force(self.config, notification)
        if ended is not None:
            return None, ended
        template = self.config.template_id(self.settings.env, template_key or "", self.environ)
        if not template:
            return None, f"no Courier template id for {template_key!r} in templates_map/{self.settings.env}.yaml"
        return template, None

    def _check(self, claimed: Any, counts: Any, now: datetime) -> policy.Verdict:
        """The send-time verdict, decided in the claim's transaction: the rules in force (a paused or
        removed notification is not sent; the template id is the one mapped now), its expiry, then
        preferences, throttle and rate limit; and how the Courier message goes out."""
        template, ended = self._in_force(claimed.notification, claimed.template_key)
        if ended is not None:
            return policy.Verdict(claimed.channels, ended)
        rule = self.config.notifications[claimed.notification]
        if policy.expired(rule, claimed.due_at, now):  # worthless this late: skipped, not sent late
            return policy.Verdict(claimed.channels, "expired")
        # Preferences and the rate limit apply to the categories a recipient may opt out of: for
        # the others they are not read (policy.check would not look at them).
        opt_out = policy.can_opt_out(self.config, rule.category)
        limit = self.config.rate_limit if opt_out else None
        rate = (now - limit.window, [c for c, cat in self.config.categories.items() if cat.opt_out]) if limit else None
        read = counts.read(throttle=(claimed.throttle_key, now - rule.throttle.window) if rule.throttle else None,
                           rate=rate, preferences=opt_out)
        throttle = (read.sent or 0, rule.throttle.limit) if rule.throttle is not None else None
        verdict = policy.check(self.config, claimed.notification, rule.category, claimed.channels, read.preferences,
                               throttle, read.recent)
        return replace(verdict, template=template, delivery=policy.delivery(
            rule, verdict.channels, template, claimed.template_key, claimed.idempotency_key, claimed.due_at))

    # -- what is coming ------------------------------------------------------------------------------
    def upcoming(self, until: datetime, now: datetime | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        """The sends due by `until`, as the rules in force would send them: each scheduled row with
        the Courier template id it would go out with now, or `will_skip` (paused, removed, no
        template id); then each digest still collecting, with its due time, how many items it holds
        and the send it would make of them. Preferences, throttles and rate limits are decided when
        a send falls due, so they are not anticipated here."""
        now = now or utcnow()
        out = []
        rows = self.store.notifications(status=["scheduled", "queued"], until=until, limit=limit, with_payload=True)
        for row in rows:
            template, ended = self._in_force(row["notification"], row["template_key"])
            out.append({**row, "template": template or row["template"], "digest_items": None, "will_skip": ended,
                        "data": dict(scheduled(row["message"]).data) if row["message"] else None})
        for digest in self.store.due_digests(until, limit=limit):
            send = self.digest_send(digest, now)
            out.append({"id": None, "notification": digest["notification"], "recipient_id": digest["recipient_id"],
                        "channels": list(send.channels) if send else [], "template": send.template if send else None,
                        "send_at": digest["send_at"], "status": "collecting",
                        "idempotency_key": send.idempotency_key if send else None,
                        "digest_items": len(digest["items"]), "will_skip": None if send else "removed",
                        "data": dict(send.data) if send else None})
        return sorted(out, key=lambda r: (r["send_at"], r["notification"], r["recipient_id"]))

    # -- the Python API ---------------------------------------------------------------------------
    def emit(self, event: Mapping[str, Any], now: datetime | None = None) -> IngestResult:
        """Emit one event in-process, exactly as if it had been posted to the hook."""
        return self.ingest([dict(event)], now)

    def schedule(self, notification: str, recipient: Mapping[str, Any] | str, at: datetime,
                 data: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None,
                 example: bool = False, now: datetime | None = None) -> int | None:
        """Schedule one notification of a declared type for `recipient` at `at`, with `data` as the
        event data its rule renders from (the rule's example data only with `example=True`).

        The send is planned by the core as an event's would be: the rule's condition, key (so its
        cancel_on and reschedule_on events reach it), throttle key, variant and idempotency key
        apply. Returns the row id, or None when a send with its idempotency key exists already.
        Data that the rule's event type refuses raises EventRejected, with the JSON paths, as the
        hook answers 422; anything else that makes the send impossible, SendRefused."""
        now = now or utcnow()
        send = self._plan_direct(notification, recipient, at, data, example, now)
        if idempotency_key is not None:
            send = replace(send, idempotency_key=idempotency_key)
        return self.store.schedule_direct(send, now)

    def _plan_direct(self, notification: str, recipient: Mapping[str, Any] | str, at: datetime,
                     data: Mapping[str, Any] | None, example: bool, now: datetime) -> Send:
        rule = self.config.notifications.get(notification)
        if rule is None:
            raise SendRefused(f"unknown notification {notification!r}")
        if data is None:
            if not example or rule.example is None:
                raise SendRefused(f"{notification}: give the event data its rule renders from"
                                 + (" (or ask for the rule's example data explicitly)" if rule.example else ""))
            data = rule.example.data
        person = self._person(recipient)
        payload = with_person(data, rule.audience, person)
        at = at.astimezone(UTC)
        event_id = f"direct:{notification}:{person['id']}:{at.isoformat()}"
        if len(event_id) > MAX_ID:
            event_id = "direct:" + hashlib.sha256(event_id.encode()).hexdigest()
        # Through the door events pass: the data must be what the rule's event type declares, within its limits.
        event = parse_event({"id": event_id, "type": rule.triggers[0], "occurred_at": now.isoformat(), "data": payload},
                            self.config)
        renderer = self.renderer(now)
        if rule.batch or rule.digest:
            return self._direct_digest(rule, person, payload, at, renderer)
        planned = [d for d in plan(self.config, rule, event, now, renderer, at) if isinstance(d, Send)]
        if not planned:
            raise SendRefused(f"{notification}: its condition does not hold for this data")
        return planned[0]

    def _direct_digest(self, rule: Notification, person: Mapping[str, Any], payload: Mapping[str, Any], at: datetime,
                       renderer: Renderer) -> Send:
        """A batch of this one event, sent at `at`; or the digest of the period `at` falls in, of this one item."""
        start = end = at
        if not rule.batch and rule.digest:
            period = digest_period(rule.digest, at, recipient_zone(person, self.config.timezone))
            start, end = period.start, period.end
        return digest_send(self.config, rule, person, [payload], start, end, at, renderer)

    def send_now(self, notification: str, recipient: Mapping[str, Any] | str, data: Mapping[str, Any] | None = None,
                 *, idempotency_key: str | None = None, example: bool = False, now: datetime | None = None) -> str:
        """Send one notification now (through the same claim and checks); returns its status, or
        'duplicate' when a send with its idempotency key exists already."""
        now = now or utcnow()
        row_id = self.schedule(notification, recipient, now, data, idempotency_key=idempotency_key,
                               example=example, now=now)
        if row_id is None:
            return "duplicate"
        # Only this row: other due rows stay `scheduled` for the sweep (queued here, nobody might deliver them).
        if not self.store.queue_due(now, ids=[row_id]):
            return self.store.status(row_id)  # planned skipped (a render failure): nothing to deliver
        return self.deliver(row_id, now)

    def _person(self, recipient: Mapping[str, Any] | str) -> dict[str, Any]:
        if isinstance(recipient, Mapping):
            if "id" not in recipient:
                raise SendRefused("a recipient needs at least an id")
            return dict(recipient)
        found = self.store.recipient(recipient)
        if found is None:
            raise SendRefused(f"unknown recipient {recipient!r}: it has not appeared in an event nor been imported")
        return found

    def cleanup(self, now: datetime | None = None) -> dict[str, int]:
        now = now or utcnow()
        return self.store.cleanup(now, self.config.retention.get("notifications"), self.config.retention.get("events"))

