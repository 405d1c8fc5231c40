"""A send's outcome told: its metrics and its one log line."""

from __future__ import annotations

import logging
from datetime import datetime

from .. import metrics
from ..logs import ids
from ..store.repository import Claimed
from .base import Outcome

log = logging.getLogger("engine")

_LEVELS = {"sent": logging.INFO, "scheduled": logging.WARNING, "failed": logging.ERROR}  # others: INFO


def reported(claimed: Claimed, recorded: str, done: datetime, backend: str, *, template: str | None = None,
              outcome: Outcome | None = None, why: str | None = None, retry_at: datetime | None = None) -> str:
    """The metrics and the one log line of a send's outcome (`recorded`: the row's new status,
    `scheduled` for a retry); returns `recorded`. Ids and reasons only, never the message."""
    lateness = (done - claimed.due_at).total_seconds()  # what the recipient sees: retries and pauses included
    metrics.send_finished(claimed.notification, recorded, lateness)
    level = _LEVELS.get(recorded, logging.INFO)
    if log.isEnabledFor(level):  # the line's fields are made only for a line that is written
        _log_outcome(level, claimed, recorded, lateness, backend, template, outcome, why, retry_at)
    return recorded


def _log_outcome(level: int, claimed: Claimed, recorded: str, lateness: float, backend: str, template: str | None,
                 outcome: Outcome | None, why: str | None, retry_at: datetime | None) -> None:
    fields = ids(notification=claimed.notification, notification_id=claimed.id, recipient_id=claimed.recipient_id,
                 outcome="retrying" if recorded == "scheduled" else recorded, attempt=claimed.attempts,
                 courier_request_id=outcome.request_id if outcome is not None else None)
    name = f"{claimed.notification} #{claimed.id} to {claimed.recipient_id}"
    if recorded == "sent":
        log.log(level, "sent %s via %s (template %s, attempt %d, %.1f s after due, request %s)", name, backend,
                template, claimed.attempts, lateness, fields.get("courier_request_id"), extra=fields)
    elif recorded == "scheduled":
        log.log(level, "retrying %s at %s: %s (attempt %d)", name, retry_at.isoformat() if retry_at else "?", why,
                claimed.attempts, extra=fields)
    elif recorded == "failed":
        log.log(level, "failed %s after %d attempt(s): %s", name, claimed.attempts, why, extra=fields)
    else:  # skipped at send time, or cancelled while it was being sent
        log.log(level, "%s %s: %s", recorded, name, why, extra=fields)
