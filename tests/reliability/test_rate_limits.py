"""Rate limits hold under a burst: with many workers delivering at once, a recipient gets at most
the configured number of non-transactional sends per window; the rest are recorded as skipped
with the reason `rate_limited`, never silently dropped. Transactional sends are not limited."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.store.tables import notifications
from tests.runtime.support import NOW, person


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_burst_of_sends_to_one_recipient_stops_at_the_limit(
    request: pytest.FixtureRequest, make_runtime, database: str
) -> None:
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_url")
    rt = make_runtime(url)
    limit = rt.config.rate_limit.limit
    who = person("usr_burst", "Burst Target")
    for i in range(limit + 25):  # more than the limit, all due at the same moment
        rt.schedule(
            "client_review_request",
            who,
            NOW,
            idempotency_key=f"burst-{i}",
            example=True,
            now=NOW - timedelta(minutes=1),
        )
    for i in range(5):  # transactional: never rate limited
        rt.schedule(
            "client_booking_confirmation",
            who,
            NOW,
            idempotency_key=f"tx-{i}",
            example=True,
            now=NOW - timedelta(minutes=1),
        )
    ids = rt.store.queue_due(NOW, limit=10_000)
    assert len(ids) == limit + 30
    chunks = [ids[i::8] for i in range(8)]
    threads = [threading.Thread(target=lambda c=c: [rt.deliver(i, NOW) for i in c]) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with rt.store.engine.connect() as conn:
        rows = conn.execute(select(notifications.c.notification, notifications.c.status, notifications.c.reason)).all()
    review = [(s, r) for n, s, r in rows if n == "client_review_request"]
    assert sum(1 for s, _ in review if s == "sent") == limit
    assert sorted({(s, r) for s, r in review if s != "sent"}) == [("skipped", "rate_limited")]
    assert len(review) == limit + 25  # nothing dropped: every one is recorded
    assert [s for n, s, _ in rows if n == "client_booking_confirmation"] == ["sent"] * 5
