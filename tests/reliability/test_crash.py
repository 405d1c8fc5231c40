"""Crash safety: SIGKILL the engine while sends are in flight, restart it, and count at Courier.

The promise: no accepted event is lost and no notification is sent twice. A few hundred
bookings are accepted whose sends fall due at once and over the next seconds; `engine serve`
(and, separately, `engine worker`) is killed with SIGKILL several times while it delivers, and
restarted. At the end, every expected send has reached the Courier stand-in exactly once, by
idempotency key and by recipient: a retry after a kill carries the same Idempotency-Key, and
Courier answers a repeated key with its first answer instead of sending again.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.courier_standin import CourierStandin
from tests.support.engine_process import Engine, copy_config, engine_env

BOOKINGS = 150  # each: 2 sends at once, 2 reminders due within seconds, 2 far-future reminders
PRACTITIONERS = 30  # about 5 bookings each: well under the per-recipient rate limit (20 an hour)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)


def bookings(now: datetime, spread_s: float = 6.0) -> list[dict]:
    person = lambda pid, role, tz: {"id": pid, "email": f"{pid}@example.com", "name": pid, "timezone": tz}  # noqa: E731
    out = []
    for i in range(BOOKINGS):
        start = now + timedelta(hours=24, seconds=10 + spread_s * i / BOOKINGS)
        out.append(
            {
                "id": f"evt_crash_{i}",
                "type": "booking.confirmed",
                "occurred_at": now.isoformat(),
                "data": {
                    "booking": {
                        "id": f"bk_{i}",
                        "start_time": start.isoformat(),
                        "end_time": (start + timedelta(hours=1)).isoformat(),
                        "service": {"id": "svc", "name": "Yoga"},
                    },
                    "client": person(f"c{i}", "client", "Europe/Berlin"),
                    "practitioner": person(f"p{i % PRACTITIONERS}", "practitioner", "America/New_York"),
                },
            }
        )
    return out


def expected_keys(events: list[dict]) -> set[str]:
    """The sends that fall due during the test: confirmations now, 24 h reminders within seconds."""
    keys = set()
    for e in events:
        b = e["data"]["booking"]
        keys.add(f"client_booking_confirmation:{b['id']}")  # the rules key confirmations by booking
        keys.add(f"practitioner_booking_notification:{b['id']}")
        keys.add(f"client_booking_reminder_24h:{b['id']}:{b['start_time']}")
        keys.add(f"practitioner_session_reminder_24h:{b['id']}:{b['start_time']}")
    return keys


def post_all(port: int, events: list[dict]) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for i in range(0, len(events), 25):
            r = client.post("/events", json={"events": events[i:i + 25]})
            assert r.status_code == 202, r.text


def wait_for(courier: CourierStandin, keys: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {k for k in courier.sends_by_key() if k in keys}
        if seen == keys:
            break
        time.sleep(0.2)
    return courier.sends_by_key()


def store_report(workdir: Path) -> str:
    import sqlite3

    with sqlite3.connect(workdir / "engine.db") as db:
        counts = db.execute("select status, count(*) from notifications group by status").fetchall()
        stuck = db.execute(
            "select id, notification, status, reason, attempts, send_at, queued_at, claimed_at, last_error "
            "from notifications where status not in ('sent', 'scheduled') or last_error is not null limit 8"
        ).fetchall()
    return f"statuses: {counts}\nnot sent: {stuck}"


def assert_exactly_once(courier: CourierStandin, keys: set[str], workdir: Path) -> None:
    sends = wait_for(courier, keys, 90)
    missing = keys - set(sends)
    assert not missing, f"{len(missing)} sends never arrived, e.g. {sorted(missing)[:3]}\n{store_report(workdir)}\n" + \
        "\n".join(p.read_text()[-2000:] for p in workdir.glob("*.log"))
    assert {k: n for k, n in sends.items() if n != 1} == {}
    unexpected = set(sends) - keys
    assert not unexpected, f"sends nobody asked for: {sorted(unexpected)[:3]}"
    per_recipient = Counter(r["body"]["message"]["to"]["user_id"] for r in courier.requests)
    assert per_recipient == Counter({f"c{i}": 2 for i in range(BOOKINGS)} | {
        f"p{j}": 2 * sum(1 for i in range(BOOKINGS) if i % PRACTITIONERS == j) for j in range(PRACTITIONERS)})


FAULTS = {
    "none": lambda courier: None,
    # Rate limits, server errors, answers slower than the client's 1 s timeout (processed by
    # Courier all the same: the retry must get the replay, not a second send), dropped connections.
    "faults": lambda courier: (courier.fail_next(40, status=429, retry_after=0.2), courier.fail_next(40, status=503),
                               courier.delay_next(10, 1.5), courier.drop_next(10)),
}


def started_bookings() -> list[dict]:
    """The bookings, made once the engine has started: a start that takes seconds on a loaded
    machine would otherwise leave their reminders past when scheduled (skipped, never sent)."""
    return bookings(datetime.now(UTC))


@pytest.mark.parametrize("faults", sorted(FAULTS))
@pytest.mark.parametrize("victim", ["serve", "worker"])
def test_sigkill_while_sending_loses_nothing_and_sends_nothing_twice(workdir: Path, victim: str, faults: str) -> None:
    with CourierStandin(token="tok") as courier:
        courier.latency = 0.02  # sends take a moment, so kills land while some are in flight
        FAULTS[faults](courier)
        env = engine_env(workdir, courier.url)
        events: list[dict] = []
        processes: list[Engine] = []
        try:
            if victim == "serve":
                target = Engine(workdir, env, "serve").start()
                processes.append(target)
                events = started_bookings()
                post_all(target.port, events)
            else:
                # The hook alone accepts the events; a separate worker delivers and is killed.
                hook = Engine(workdir, env, "serve")
                hook.extra = ["--no-worker"]
                processes.append(hook.start())
                events = started_bookings()
                post_all(hook.port, events)
                target = Engine(workdir, env, "worker").start()
                processes.append(target)
            for pause in (0.4, 1.5, 1.0, 2.5):
                time.sleep(pause)
                target.kill()
                target.start()
            assert_exactly_once(courier, expected_keys(events), workdir)
        finally:
            for process in processes:
                process.stop()
        assert len(courier.requests) == 4 * BOOKINGS
