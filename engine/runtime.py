"""The live engine: the pure core wired to the store, the queue and a delivery backend.

`Runtime` is what `engine serve`, `engine worker`, the HTTP hook and the Python API share.
Every method takes `now`, so the same code runs under a test's clock.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from .core import policy
from .core.decide import Renderer, Send, decide, digest_send
from .core.events import Event, EventRejected, parse_event
from .core.rendering import render
from .core.matching import context
from .core.timing import recipient_zone
from .delivery import Backend, Outcome, backend_for
from .rules.loader import load
from .rules.model import Config
from .settings import Settings
from .clock import utcnow
from .signing import make_unsubscribe_token
from .store.codec import Codec
from .store.db import connect, is_current, upgrade
from .store.repository import IngestResult, Store

log = logging.getLogger("engine")


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry `attempt` (1-based): exponential with jitter, capped at 10 minutes."""
    base = min(600.0, 2.0 ** (attempt - 1))
    delay = base * (0.5 + random.random() / 2)
    return max(delay, retry_after or 0.0)


def _logged(result: IngestResult | Exception) -> Any:
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
               backend: Backend | None = None) -> "Runtime":
        config = load(settings.config_path, environ)
        if settings.env not in config.templates:
            raise ValueError(f"ENGINE_ENV={settings.env!r}: there is no templates_map/{settings.env}.yaml")
        engine = connect(settings.database_url)
        if migrate:
            upgrade(engine)
        elif not is_current(engine):
            raise ValueError("the database is not set up, or is older than this engine: run `engine db upgrade`")
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
    def sweep(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        for digest in self.store.due_digests(now):
            self._close_digest(digest, now)
        # A queued row whose task was lost, or a claim whose worker died, is handed out again. Doing
        # it early is safe: a claim is atomic, and a second attempt carries the same Idempotency-Key.
        timeout = self.settings.courier_timeout
        ids = self.store.queue_due(now, requeue_after=timedelta(seconds=max(5.0, 2 * timeout)),
                                   stale_sending=timedelta(seconds=2 * timeout + 5), max_attempts=self.settings.max_attempts)
        for notification_id in ids:
            if self.enqueue is not None:
                self.enqueue(notification_id)
            else:
                self.deliver(notification_id, now)
        return len(ids)

    def _close_digest(self, digest: dict[str, Any], now: datetime) -> None:
        rule = self.config.notifications.get(digest["notification"])
        if rule is None:
            return
        # The store gives instants back in UTC; the core made the period in the recipient's zone, and
        # renders (and keys) the digest from it: hand it the same local times, as `engine preview` does.
        tz = recipient_zone(digest["recipient"], self.config.timezone)
        send = digest_send(self.config, rule, digest["recipient"], digest["items"], digest["period_start"].astimezone(tz),
                           digest["period_end"].astimezone(tz), digest["send_at"], self.renderer(now))
        self.store.close_digest(digest["bucket"], send, now, items=len(digest["items"]))

    # -- delivery -------------------------------------------------------------------------------
    def deliver(self, notification_id: int, now: datetime | None = None) -> str:
        """Claim one queued send and deliver it; returns the row's new status (or 'not claimed')."""
        clock = (lambda: now) if now is not None else utcnow
        start = clock()
        claimed, verdict = self.store.claim_checked(notification_id, start, lambda c, counts: self._check(c, counts, start))
        if claimed is None:
            return "not claimed"
        if verdict.skip:
            return "skipped"
        message = claimed.message
        if verdict.channels != claimed.channels and message:
            message = {"message": {**message["message"], "routing": {"method": "single", "channels": list(verdict.channels)}}}
        try:
            outcome = self.backend.send(message, claimed.idempotency_key)
        except Exception as exc:  # a backend bug must not leave the row `sending` until a sweep finds it
            log.exception("delivery backend raised for %s #%d", claimed.notification, claimed.id)
            outcome = Outcome("retry", error=f"unexpected {type(exc).__name__}")
        done = clock()
        if outcome.status == "sent":
            status, kwargs = "sent", {"request_id": outcome.request_id}
        elif outcome.status == "retry" and claimed.attempts < self.settings.max_attempts:
            retry_at = done + timedelta(seconds=backoff(claimed.attempts, outcome.retry_after))
            status, kwargs = "scheduled", {"reason": "retry", "error": outcome.error, "retry_at": retry_at}
            log.warning("retrying %s #%d at %s: %s", claimed.notification, claimed.id, retry_at.isoformat(), outcome.error)
        else:
            status, kwargs = "failed", {"reason": outcome.error, "error": outcome.error}
            log.error("failed %s #%d: %s", claimed.notification, claimed.id, outcome.error)
        if not self.store.finish(claimed, status, done, **kwargs):
            return "not claimed"  # another worker took the row over (this claim went stale)
        log.debug("%s %s #%d via %s", status, claimed.notification, claimed.id, self.backend.name)
        return status

    def _check(self, claimed: Any, counts: Any, now: datetime) -> policy.Verdict:
        """Preferences, throttle and rate limit, decided in the claim's transaction."""
        rule = self.config.notifications.get(claimed.notification)
        throttle = None
        if rule is not None and rule.throttle is not None:
            throttle = (counts.sent(claimed.throttle_key, now - rule.throttle.window), rule.throttle.limit)
        rate = None
        if self.config.rate_limit is not None:
            optional = [c for c, cat in self.config.categories.items() if cat.opt_out]
            rate = counts.recent(now - self.config.rate_limit.window, optional)
        prefs = counts.preferences()
        category = rule.category if rule else claimed.category
        return policy.check(self.config, claimed.notification, category, claimed.channels, prefs, throttle, rate)

    # -- the Python API ---------------------------------------------------------------------------
    def emit(self, event: Mapping[str, Any], now: datetime | None = None) -> IngestResult:
        """Emit one event in-process, exactly as if it had been posted to the hook."""
        return self.ingest([dict(event)], now)

    def schedule(self, notification: str, recipient: Mapping[str, Any] | str, at: datetime,
                 data: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None,
                 now: datetime | None = None) -> int | None:
        """Schedule one notification of a declared type for `recipient` at `at`, with `data` as the
        event data its rule renders from (its example's data when omitted). Returns the row id."""
        now = now or utcnow()
        rule = self.config.notifications.get(notification)
        if rule is None:
            raise KeyError(f"unknown notification {notification!r}")
        person = self._person(recipient)
        payload = dict(data if data is not None else (rule.example.data if rule.example else {}))
        event = Event(f"direct:{notification}:{person['id']}:{at.isoformat()}", rule.triggers[0], now, payload)
        ctx = context(self.config, rule, event, person)
        rendered = render(self.config, rule, ctx, person, self.settings.env, self.environ, self.renderer(now).unsubscribe)
        send = Send(notification, person, "", at.astimezone(timezone.utc), "scheduled", None, rule.channels, rule.category,
                    None, rendered.template_key, rendered.template, rendered.data,
                    idempotency_key or f"{notification}:{person['id']}:direct:{at.astimezone(timezone.utc).isoformat()}")
        return self.store.schedule_direct(send, now)

    def send_now(self, notification: str, recipient: Mapping[str, Any] | str, data: Mapping[str, Any] | None = None,
                 *, idempotency_key: str | None = None, now: datetime | None = None) -> str:
        """Send one notification now (through the same claim and checks); returns its status."""
        now = now or utcnow()
        row_id = self.schedule(notification, recipient, now, data, idempotency_key=idempotency_key, now=now)
        if row_id is None:
            return "duplicate"
        # Only this row: other due rows stay `scheduled` for the sweep (queued here, nobody might deliver them).
        self.store.queue_due(now, ids=[row_id])
        return self.deliver(row_id, now)

    def _person(self, recipient: Mapping[str, Any] | str) -> dict[str, Any]:
        if isinstance(recipient, Mapping):
            if "id" not in recipient:
                raise ValueError("a recipient needs at least an id")
            return dict(recipient)
        found = self.store.recipient(recipient)
        if found is None:
            raise KeyError(f"unknown recipient {recipient!r}: it has not appeared in an event nor been imported")
        return found

    def cleanup(self, now: datetime | None = None) -> dict[str, int]:
        now = now or utcnow()
        return self.store.cleanup(now, self.config.retention.get("notifications"), self.config.retention.get("events"))

