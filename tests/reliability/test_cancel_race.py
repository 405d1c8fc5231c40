"""A cancel racing a send in flight: the cancelled reminder is never sent afterwards.

The interleaving that let a cancelled (or moved) booking's reminder through: the reminder is
claimed, `booking.cancelled` is answered 202 while the attempt is in flight, Courier answers
503 (or 429), and the row used to go back to `scheduled` for a retry that then delivered it.
The promise: a cancel ends every send that Courier has not yet accepted, including one between
attempts; a send in flight is never re-armed after a cancel, and one that Courier accepted
before the cancel could stop it is recorded `sent`.

The first tests replay that interleaving step by step on the store (SQLite and PostgreSQL); one
holds a PostgreSQL row lock so that the failed attempt's outcome and the cancel are written at
the same moment; the last races real processes (PostgreSQL + Redis, an `engine serve` hook and
two `engine worker`s) against a Courier stand-in that fails the first attempt of every key.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from engine.delivery import Message, Outcome
from engine.runtime import Runtime
from engine.store.db import connect, upgrade
from engine.store.repository import Claimed
from tests.runtime.support import NOW, booking_cancelled, booking_confirmed, booking_rescheduled
from tests.support.courier_standin import CourierStandin
from tests.support.engine_process import Engine, copy_config, engine_env

BOOKING = "bk_race"
START = NOW + timedelta(days=2)  # the session; its 24 h reminders fall due at DUE
DUE = START - timedelta(hours=24)
MOVED_TO = START + timedelta(days=3)
LATER = DUE + timedelta(days=1)  # well past every retry and every stale claim
REMINDER = "client_booking_reminder_24h"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both stores: a SQLite file and a PostgreSQL schema."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


class RecordingCourier:
    """A delivery backend standing in for Courier: it accepts every attempt (recording the key)
    unless `answers` holds an outcome for it, and runs `meanwhile` once, while an attempt is in
    flight (before Courier answers it)."""

    name = "courier"

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.answers: list[Outcome] = []
        self.meanwhile: Callable[[], object] | None = None

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        outcome = self.answers.pop(0) if self.answers else Outcome("sent", request_id=f"req-{len(self.accepted) + 1}")
        if outcome.status == "sent":
            self.accepted.append(idempotency_key)
        return outcome


@dataclass(frozen=True)
class Ending:
    """An event that ends the booking's reminder, and the reason the row then carries."""

    event: Callable[[datetime], dict[str, Any]]
    reason: str


ENDINGS = {
    "cancelled": Ending(
        lambda at: booking_cancelled("evt_cancel", BOOKING, START, at), "cancelled by booking.cancelled"
    ),
    "rescheduled": Ending(
        lambda at: booking_rescheduled("evt_moved", BOOKING, START, MOVED_TO, at), "rescheduled by booking.rescheduled"
    ),
}
RETRY = Outcome("retry", error="Courier answered 503")


@dataclass
class Race:
    """A runtime whose booking's client reminder is claimed at DUE (its attempt in flight)."""

    rt: Runtime
    courier: RecordingCourier
    row_id: int
    key: str  # its Idempotency-Key
    claimed: Claimed

    def end(self, how: str, at: datetime) -> None:
        self.rt.emit(ENDINGS[how].event(at), now=at)

    def row(self) -> dict[str, Any]:
        [row] = [r for r in reminders(self.rt) if r["id"] == self.row_id]
        return row

    def statuses(self) -> list[tuple[str, str | None]]:
        history: list[dict[str, Any]] = self.rt.store.history(self.row_id)
        return [(h["status"], h["reason"]) for h in history]

    def moved_reminders(self) -> list[dict[str, Any]]:
        return [r for r in reminders(self.rt) if r["id"] != self.row_id]


def reminders(rt: Runtime) -> list[dict[str, Any]]:
    """The booking's client reminder rows (a moved booking has two)."""
    found: list[dict[str, Any]] = rt.store.notifications(notification=REMINDER, limit=None)
    return found


def claimed_reminder(url: str, make_runtime: Callable[..., Runtime]) -> Race:
    """A booking confirmed at NOW (its confirmations sent), its client reminder claimed at DUE."""
    courier = RecordingCourier()
    rt = make_runtime(url, backend=courier)
    rt.emit(booking_confirmed("evt_booked", BOOKING, START, NOW), now=NOW)
    rt.sweep(NOW)  # the confirmations go out; the reminders wait for DUE
    [row] = reminders(rt)
    assert rt.store.queue_due(DUE, ids=[row["id"]]) == [row["id"]]
    claimed = rt.store.claim(row["id"], DUE)
    assert claimed is not None
    found = Race(rt, courier, row["id"], row["idempotency_key"], claimed)
    assert found.row()["status"] == "sending"
    return found


@pytest.fixture
def race(db_url: str, make_runtime: Callable[..., Runtime]) -> Race:
    return claimed_reminder(db_url, make_runtime)


def assert_never_handed_out_again(race: Race) -> None:
    """Sweeps long after: the row is not queued again, and Courier never gets its key."""
    assert race.rt.store.queue_due(LATER, ids=[race.row_id]) == []
    race.rt.sweep(LATER)
    race.rt.sweep(LATER + timedelta(days=7))
    assert race.key not in race.courier.accepted
    assert race.row()["status"] == "cancelled"


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_an_attempt_that_fails_after_the_cancel_ends_the_row_cancelled(race: Race, how: str) -> None:
    race.end(how, DUE + timedelta(seconds=1))
    assert race.row()["status"] == "sending"  # not ended yet: Courier may still accept it
    recorded = race.rt.store.finish(race.claimed, "scheduled", DUE + timedelta(seconds=2), reason="retry",
                                    error="Courier answered 503", retry_at=DUE + timedelta(seconds=3))
    row = race.row()
    assert (row["status"], row["reason"]) == ("cancelled", ENDINGS[how].reason), "the failed attempt re-armed the row"
    assert recorded == "cancelled"
    assert race.statuses() == [("scheduled", None), ("sending", "attempt 1"), ("cancelled", ENDINGS[how].reason)]
    assert_never_handed_out_again(race)


def test_a_moved_booking_gets_one_reminder_at_its_new_time(race: Race) -> None:
    race.end("rescheduled", DUE + timedelta(seconds=1))
    race.rt.store.finish(race.claimed, "scheduled", DUE + timedelta(seconds=2), reason="retry",
                         error="Courier answered 429", retry_at=DUE + timedelta(seconds=30))
    [moved] = race.moved_reminders()
    assert (moved["status"], moved["send_at"]) == ("scheduled", MOVED_TO - timedelta(hours=24))
    race.rt.sweep(MOVED_TO)
    reminded = [k for k in race.courier.accepted if k.startswith(REMINDER)]
    assert reminded == [moved["idempotency_key"]], f"reminders sent: {reminded} (the old time's is {race.key})"
    assert race.row()["status"] == "cancelled"


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_an_attempt_courier_accepted_before_the_cancel_is_recorded_sent(race: Race, how: str) -> None:
    race.end(how, DUE + timedelta(seconds=1))
    recorded = race.rt.store.finish(race.claimed, "sent", DUE + timedelta(seconds=2), request_id="req-accepted")
    row = race.row()
    assert (row["status"], row["request_id"]) == ("sent", "req-accepted")  # the truth: it went out
    assert recorded in ("sent", True)  # (True: the store's answer before it named the status recorded)
    assert [s for s, _ in race.statuses()] == ["scheduled", "sending", "sent"]
    assert race.rt.store.queue_due(LATER, ids=[race.row_id]) == []
    race.rt.sweep(LATER)
    assert race.key not in race.courier.accepted  # sent once (by the claim above), never again
    assert race.row()["status"] == "sent"


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_a_claim_whose_worker_died_after_the_cancel_ends_cancelled(race: Race, how: str) -> None:
    race.end(how, DUE + timedelta(seconds=1))
    handed_out = race.rt.store.queue_due(
        DUE + timedelta(minutes=10), stale_sending=timedelta(minutes=2), max_attempts=8
    )
    row = race.row()
    assert race.row_id not in handed_out and row["status"] == "cancelled", f"the dead claim was {row['status']}"
    assert row["reason"] == ENDINGS[how].reason
    assert race.statuses()[-1] == ("cancelled", ENDINGS[how].reason)
    # The worker was only slow, not dead: its late retry changes nothing.
    late = race.rt.store.finish(race.claimed, "scheduled", DUE + timedelta(minutes=11), reason="retry",
                                error="Courier answered 503", retry_at=DUE + timedelta(minutes=12))
    assert not late
    assert_never_handed_out_again(race)


def test_a_cancel_between_attempts_ends_the_armed_retry(race: Race) -> None:
    race.rt.store.finish(race.claimed, "scheduled", DUE + timedelta(seconds=1), reason="retry",
                         error="Courier answered 503", retry_at=DUE + timedelta(seconds=3))
    assert race.row()["status"] == "scheduled"
    race.end("cancelled", DUE + timedelta(seconds=2))
    assert [s for s, _ in race.statuses()] == ["scheduled", "sending", "scheduled", "cancelled"]
    assert_never_handed_out_again(race)


@pytest.mark.parametrize("answer", [RETRY, Outcome("retry", error="Courier answered 429", retry_after=30.0)])
def test_a_cancel_during_delivery_stops_both_reminders(db_url: str, make_runtime: Callable[..., Runtime],
                                                       answer: Outcome) -> None:
    """The same interleaving through Runtime.deliver: the cancel is ingested while Courier holds
    the first reminder's attempt; Courier then refuses it. Neither reminder ever goes out."""
    courier = RecordingCourier()
    rt = make_runtime(db_url, backend=courier)
    rt.emit(booking_confirmed("evt_booked", BOOKING, START, NOW), now=NOW)
    rt.sweep(NOW)
    courier.answers = [answer]  # the reminder in flight; the other one is never claimed
    courier.meanwhile = lambda: rt.emit(ENDINGS["cancelled"].event(DUE), now=DUE)
    rt.sweep(DUE)
    both = [r for r in rt.store.notifications(limit=None) if r["notification"].endswith("_reminder_24h")]
    assert {r["status"] for r in both} == {"cancelled"}, [(r["notification"], r["status"]) for r in both]
    for later in (DUE + timedelta(minutes=1), LATER):
        rt.sweep(later)
    assert not [k for k in courier.accepted if "_reminder_" in k]
    ended = {r["status"] for r in rt.store.notifications(limit=None) if r["notification"].endswith("_reminder_24h")}
    assert ended == {"cancelled"}


@contextmanager
def row_locked(pg_url: str, row_id: int) -> Iterator[Callable[[Callable[[], bool]], int | None]]:
    """Hold a PostgreSQL row lock on a notification row (as a slow transaction would); yields
    `queued(done)`, which waits until one more transaction queues for the row and returns its
    backend pid (None when `done()` says the caller finished without queueing). The lock is
    released on leaving."""
    db = create_engine(pg_url)
    try:
        with db.connect() as holder, db.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:
            holder.execute(text("SELECT id FROM notifications WHERE id = :id FOR UPDATE"), {"id": row_id})
            blockers = [holder.scalar(text("SELECT pg_backend_pid()"))]

            def queued(done: Callable[[], bool]) -> int | None:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    found = probe.scalars(text("SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && "
                                               "CAST(:pids AS int[]) AND NOT pid = ANY(CAST(:pids AS int[]))"),
                                          {"pids": blockers}).all()
                    if found:
                        blockers.append(found[0])
                        return int(found[0])
                    if done():
                        return None
                    time.sleep(0.01)
                raise AssertionError("nothing queued for the row lock within 10 s")

            yield queued
            holder.commit()
    finally:
        db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_a_cancel_committing_with_the_failed_attempt_still_ends_the_row(
    pg_url: str, make_runtime: Callable[..., Runtime], how: str
) -> None:
    """On PostgreSQL each statement of a transaction reads what was committed when it started:
    the failed attempt's outcome must not slip in between the cancel's reading of the row and its
    writing. The attempt's `finish` queues for the row first, the cancel second; then they run."""
    race = claimed_reminder(pg_url, make_runtime)
    finished: list[Any] = []
    with row_locked(pg_url, race.row_id) as queued:
        attempt = threading.Thread(target=lambda: finished.append(race.rt.store.finish(
            race.claimed, "scheduled", DUE + timedelta(seconds=2), reason="retry", error="Courier answered 503",
            retry_at=DUE + timedelta(seconds=3))))
        attempt.start()
        assert queued(lambda: not attempt.is_alive()) is not None, "the attempt's outcome did not wait for the row"
        cancel = threading.Thread(target=race.end, args=(how, DUE + timedelta(seconds=1)))
        cancel.start()
        queued(lambda: not cancel.is_alive())  # (a cancel that does not wait is written first: also fine)
    attempt.join(10)
    cancel.join(10)
    assert finished, "the attempt's outcome was not recorded"
    row = race.row()
    assert (row["status"], row["reason"]) == ("cancelled", ENDINGS[how].reason), "the failed attempt re-armed the row"
    assert_never_handed_out_again(race)


# -- the race, with real processes ----------------------------------------------------------------

RACES = 200  # bookings, each cancelled while its two 24 h reminders are due
GAP_S = 0.1  # between two bookings' due times
LEAD_S = 4.0  # from posting the bookings to the first due time: their confirmations go out first
HOLD_S = 0.1  # Courier holds each reminder's first attempt this long, then refuses it
MIN_HITS = 20  # races whose cancel surely landed while a first attempt was in flight
REMINDERS = ("client_booking_reminder_24h", "practitioner_session_reminder_24h")


@dataclass
class Booking:
    index: int
    event: dict[str, Any]
    due: datetime
    in_flight: bool  # cancel when Courier gets the first reminder attempt (else at the due time, jittered)
    posted: float = 0.0  # time.monotonic() when the cancel was posted, and when it was answered 202
    answered: float = 0.0
    status: int = 0
    error: str = ""  # what went wrong posting the cancel, if anything
    keys: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.event["data"]["booking"]["id"])


def race_bookings(now: datetime) -> list[Booking]:
    """Bookings whose reminders fall due one every GAP_S seconds, after LEAD_S; everyone distinct
    (no rate limit or throttle decides a race)."""
    out = []
    for i in range(RACES):
        start = now + timedelta(hours=24, seconds=LEAD_S + GAP_S * i)
        event = booking_confirmed(f"evt_race_{i}", f"bk_race_{i}", start, now, client=f"usr_c_race_{i}",
                                  practitioner=f"usr_p_race_{i}")
        booking = Booking(i, event, start - timedelta(hours=24), in_flight=i % 4 < 2)
        booking.keys = [f"{n}:{booking.id}:{event['data']['booking']['start_time']}" for n in REMINDERS]
        out.append(booking)
    return out


def cancel_of(booking: Booking) -> dict[str, Any]:
    data = booking.event["data"]
    return {"id": f"evt_cancel_{booking.index}", "type": "booking.cancelled",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"booking": data["booking"], "cancelled_by": "client", "client": data["client"],
                     "practitioner": data["practitioner"]}}


def fails_with_429(key: str) -> bool:
    """Odd bookings' reminders are refused with 429 and Retry-After, even ones with 503."""
    return key.startswith(REMINDERS) and int(key.split(":")[1].rsplit("_", 1)[1]) % 2 == 1


@pytest.fixture
def engine_on_pg(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[str, CourierStandin, str]]:
    """An `engine serve --no-worker` hook and two `engine worker`s on PostgreSQL + Redis, with a
    Courier that fails the first attempt of every key: (hook URL, the stand-in, database URL)."""
    copy_config(tmp_path)
    with CourierStandin(token="tok") as courier:
        courier.fail_first(429, retry_after=1, seconds=HOLD_S, only=fails_with_429)
        courier.fail_first(503, seconds=HOLD_S, only=lambda key: key.startswith(REMINDERS))
        courier.fail_first(503)  # the confirmations and cancellation notices too, without the hold
        env = engine_env(tmp_path, courier.url, ENGINE_DATABASE_URL=pg_url, ENGINE_QUEUE_URL=redis_url,
                         ENGINE_WORKERS="4", ENGINE_SWEEP_INTERVAL="0.05")
        migrated = connect(pg_url)
        upgrade(migrated)  # here, once: the three processes then start on a current schema
        migrated.dispose()
        hook = Engine(tmp_path, env, "serve")
        hook.extra = ["--no-worker"]
        processes = [hook, Engine(tmp_path, env, "worker"), Engine(tmp_path, env, "worker")]
        try:
            for p in processes:
                p.start()
            yield f"http://127.0.0.1:{hook.port}", courier, pg_url
        finally:
            with ThreadPoolExecutor(len(processes)) as stopping:  # each may take seconds to drain
                list(stopping.map(Engine.stop, processes))


def post_cancel(client: httpx.Client, booking: Booking) -> None:
    booking.posted = time.monotonic()
    try:
        response = client.post("/events", json=cancel_of(booking))
    except httpx.HTTPError as exc:  # recorded: the test names it, a pool thread would swallow it
        booking.error = f"{type(exc).__name__}: {exc}"
        return
    booking.answered, booking.status = time.monotonic(), response.status_code
    if response.status_code != 202:
        booking.error = response.text[:200]


def first_attempts(courier: CourierStandin) -> dict[str, float]:
    """When Courier received the first (refused) attempt of each key."""
    return {i["idempotency_key"]: i["at"] for i in reversed(courier.injected)}


def dispatch_cancels(client: httpx.Client, courier: CourierStandin, bookings: list[Booking],
                     clock: Callable[[datetime], float]) -> None:
    """Post each booking's cancel at its moment: as soon as Courier holds its first reminder
    attempt, or at its due time give or take (before the claim, in flight, or between attempts)."""
    jitter = random.Random(7)  # within 0.2 s: answered before a second attempt can start (0.5 s after a refusal)
    timed = sorted(
        ((clock(b.due) + jitter.uniform(-0.1, 0.2), b.index) for b in bookings if not b.in_flight), reverse=True
    )
    watched = {k: b for b in bookings if b.in_flight for k in b.keys}
    deadline = time.monotonic() + LEAD_S + GAP_S * RACES + 15
    seen = 0  # Courier's refusals read so far
    with ThreadPoolExecutor(8) as pool:
        while (timed or watched) and time.monotonic() < deadline:
            while timed and timed[-1][0] <= time.monotonic():
                pool.submit(post_cancel, client, bookings[timed.pop()[1]])
            refused = courier.injected
            for entry in refused[seen:]:
                booking = watched.get(entry["idempotency_key"])
                if booking is not None:
                    pool.submit(post_cancel, client, booking)
                    for k in booking.keys:
                        watched.pop(k, None)
            seen = len(refused)
            time.sleep(0.003)


def reminder_rows(pg_url: str, bookings: list[Booking]) -> dict[str, str]:
    db = create_engine(pg_url)
    try:
        with db.connect() as conn:
            rows = conn.execute(text("SELECT idempotency_key, status FROM notifications WHERE notification IN "
                                     "('client_booking_reminder_24h', 'practitioner_session_reminder_24h')")).all()
    finally:
        db.dispose()
    ours = {k for b in bookings for k in b.keys}
    return {k: s for k, s in rows if k in ours}


def settle(pg_url: str, bookings: list[Booking], within: float) -> dict[str, str]:
    """The reminders' statuses once none is pending any more, and a re-armed retry would have had
    its time (a retry comes 0.5 to 1 s after a refused attempt)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not {"scheduled", "queued", "sending"} & set(reminder_rows(pg_url, bookings).values()):
            break
        time.sleep(0.2)
    time.sleep(1.5)
    return reminder_rows(pg_url, bookings)


@pytest.mark.postgres
@pytest.mark.redis
def test_cancels_racing_first_attempts_that_fail_never_let_a_reminder_through(
        engine_on_pg: tuple[str, CourierStandin, str]) -> None:
    url, courier, pg_url = engine_on_pg
    now = datetime.now(UTC)
    bookings = race_bookings(now)
    epoch = time.monotonic() - (datetime.now(UTC) - now).total_seconds()
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, RACES, 25):
            response = client.post("/events", json={"events": [b.event for b in bookings[i:i + 25]]})
            assert response.status_code == 202, response.text
        dispatch_cancels(client, courier, bookings, lambda t: epoch + (t - now).total_seconds())
    assert {b.status for b in bookings} == {202}, [(b.id, b.status, b.error) for b in bookings if b.status != 202][:5]
    statuses = settle(pg_url, bookings, within=20)

    accepted: dict[str, list[float]] = {}
    for request in courier.requests:
        accepted.setdefault(request["idempotency_key"], []).append(request["at"])
    first = first_attempts(courier)
    in_flight = [b for b in bookings if any(b.posted >= first.get(k, float("inf")) and b.answered <= first[k] + HOLD_S
                                            for k in b.keys)]
    # Cancelled but sent: Courier accepted a reminder after its booking's cancel was answered 202.
    leaked = sorted(k for b in bookings for k in b.keys if any(at > b.answered for at in accepted.get(k, [])))
    keys = [k for b in bookings for k in b.keys]
    sent_first = [k for k in keys if statuses.get(k) == "sent"]
    took = sorted(b.answered - b.posted for b in bookings)
    print(
        f"\n{RACES} races ({len(keys)} reminders), 2 workers, PostgreSQL + Redis: cancel answered while a first "
        f"attempt was in flight in {len(in_flight)}; "
        f"reminders cancelled {sum(statuses.get(k) == 'cancelled' for k in keys)}, "
        f"sent before the cancel {len(sent_first)}; cancelled-but-sent {len(leaked)}; "
        f"cancel answered in {took[len(took) // 2]:.3f} s (median), {took[len(took) * 9 // 10]:.3f} s (p90)"
    )
    assert leaked == [], (
        f"{len(leaked)} reminders reached Courier after their booking's cancel was answered: {leaked[:5]}"
    )
    assert {k: len(v) for k, v in accepted.items() if len(v) > 1} == {}, "a reminder reached Courier twice"
    for k in keys:  # the store tells the truth: sent exactly when Courier accepted it
        assert statuses.get(k) == ("sent" if k in accepted else "cancelled"), (k, statuses.get(k), k in accepted)
    assert len(in_flight) >= MIN_HITS, f"only {len(in_flight)} cancels landed while an attempt was in flight"
