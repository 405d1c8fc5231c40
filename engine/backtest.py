"""`engine backtest`: replay the events in the live store through a candidate configuration.

Nothing is sent and nothing is written: the recorded events run through the preview of the
current rules and of the candidate, and the differences are reported as `engine diff` does.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from sqlalchemy import select

from .core.decide import Renderer
from .diff import Change, compare, materialize
from .preview import Progress, run
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
    directory, tmp = materialize(candidate)
    try:
        other = load(os.path.join(directory, config_name))
    finally:
        if tmp is not None:
            tmp.cleanup()
    raw = recorded_events(store, since)
    rows = []
    for config in (current, other):
        renderer = Renderer(env=env if env in config.templates else sorted(config.templates)[0], environ={})
        result = run(config, _known(raw, config), now, renderer, progress=progress)
        rows.append([r.as_json() for r in result.rows])
    return len(raw), compare(f"events since {since.isoformat()}", rows[0], rows[1])


def _known(raw: list[tuple[int, Any]], config: Config) -> list[tuple[int, Any]]:
    # An event type the candidate no longer declares is not an error here: it simply sends nothing.
    return [(i, e) for i, e in raw if isinstance(e, dict) and e.get("type") in config.events]
