"""`engine backtest`: replay the events in the live store through a candidate configuration.

Nothing is sent and nothing is written: the recorded events run through the preview of the
current rules and of the candidate, and the differences are reported as `engine diff` does.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from sqlalchemy import select

from .diff import Change, EventSet, checked_out, compare, sends
from .preview import Progress
from .rules.loader import load
from .rules.model import Config
from .store.repository import Store
from .store.tables import events


def recorded_events(store: Store, since: datetime) -> list[tuple[int, Any]]:
    with store.reader.connect() as conn:
        payloads = conn.scalars(select(events.c.payload).where(events.c.occurred_at >= since)
                                .order_by(events.c.occurred_at, events.c.id)).all()
    return [(i, store.codec.loads(p)) for i, p in enumerate(payloads, 1)]


def backtest(store: Store, current: Config, candidate: str, since: datetime, now: datetime, env: str,
             config_name: str = "notifications.yaml", progress: Progress | None = None) -> tuple[int, list[Change]]:
    """(events replayed, changes); the virtual clock stops at `now`, so later sends show as pending."""
    with checked_out(candidate) as directory:
        other = load(os.path.join(directory, config_name))
    raw, source = recorded_events(store, since), f"events since {since.isoformat()}"
    before, after = (sends(c, EventSet(source, _known(raw, c), now), env, progress) for c in (current, other))
    return len(raw), compare(source, before, after)


def _known(raw: list[tuple[int, Any]], config: Config) -> list[tuple[int, Any]]:
    # An event type the candidate no longer declares is not an error here: it simply sends nothing.
    return [(i, e) for i, e in raw if isinstance(e, dict) and e.get("type") in config.events]
