"""The store's contract, one test body run against a SQLite file and against PostgreSQL.

Each method of `engine.store.repository.Store` promises something in its docstring; these tests
hold it to that, including under concurrency (threads of one process stand in for workers).
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from engine.core.decide import Cancel, Send, digest_send
from engine.core.events import Event
from engine.store.codec import Codec
from engine.store.db import connect, upgrade
from engine.store.repository import Store
from engine.store.tables import digests, events, history, metadata, notifications, recipients

from .support import NOW, booking_cancelled, booking_confirmed, booking_rescheduled, payment_succeeded, person

TABLES = {"events", "recipients", "preferences", "notifications", "notification_history", "digests",
          "digest_items", "webhook_receipts", "signature_receipts", "alembic_version"}


def make_event(eid: str | None = None, at: datetime = NOW) -> Event:
    return Event(eid or f"evt_{uuid.uuid4().hex[:10]}", "booking.confirmed", at, {"note": "test"})


def make_send(*, notification: str = "client_booking_reminder_24h", key: str | None = "bk_1",
              send_at: datetime = NOW, recipient: dict[str, Any] | None = None, idem: str | None = None,
              category: Any = "reminders", status: str = "scheduled", event_id: str = "evt_src") -> Send:
    who = recipient or person("usr_c_1")
    return Send(notification, who, event_id, send_at, status, None, ("email",), category, key, "tk", "TEMPLATE_V1",
                {"booking_id": key, "user_email": who["email"]}, idem or f"{notification}:{uuid.uuid4().hex}")


def one(store: Store, row_id: int) -> dict[str, Any]:
    [row] = [r for r in store.notifications(limit=10_000) if r["id"] == row_id]
    return row


def by_key(store: Store) -> dict[str, dict[str, Any]]:
    return {r["idempotency_key"]: r for r in store.notifications(limit=10_000)}


def run_threads(n: int, target: Any) -> list[Any]:
    """Run target(i) in n threads released together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


class StoreContract:
    """Mixed into one test class per database; `url` is the fixture naming the database."""

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def engine(self, url: str) -> Any:
        engine = connect(url)
        upgrade(engine)
        yield engine
        engine.dispose()

    @pytest.fixture
    def store(self, engine: Any) -> Store:
        return Store(engine)

    def ingest(self, store: Store, *sends: Send, event: Event | None = None, now: datetime = NOW) -> Any:
        return store.ingest([(event or make_event(at=now), list(sends))], now)

    # -- migrations ---------------------------------------------------------------------------------
    def test_upgrade_creates_the_tables_and_is_idempotent(self, url: str) -> None:
        engine = connect(url)
        try:
            assert not (TABLES & set(inspect(engine).get_table_names())), "the schema must start empty"
            upgrade(engine)
            assert set(inspect(engine).get_table_names()) >= TABLES
            store = Store(engine)
            store.set_preferences("usr_1", {"client_welcome": False}, NOW)
            upgrade(engine)  # again: nothing changes, nothing is lost
            upgrade(engine)
            with engine.connect() as conn:
                assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == ["0010"]
            assert store.preferences("usr_1") == {"client_welcome": False}
            # The migrated schema is the one the code declares: autogenerate finds nothing to add.
            from alembic.autogenerate import compare_metadata
            from alembic.migration import MigrationContext

            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
        finally:
            engine.dispose()

    def test_concurrent_upgrades_of_a_fresh_database(self, url: str) -> None:
        engines = [connect(url) for _ in range(3)]
        try:
            run_threads(3, lambda i: upgrade(engines[i]))
            with engines[0].connect() as conn:
                assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == ["0010"]
        finally:
            for e in engines:
                e.dispose()

    # -- ingest -------------------------------------------------------------------------------------
    def test_ingest_stores_the_event_and_its_sends(self, store: Store) -> None:
        event = make_event("evt_a")
        a, b = make_send(key="bk_1"), make_send(key="bk_2", notification="client_booking_reminder_30m")
        result = self.ingest(store, a, b, event=event)
        assert (result.accepted, result.duplicates, result.scheduled, result.cancelled) == (["evt_a"], [], 2, 0)
        assert store.event_count() == 1
        rows = by_key(store)
        assert set(rows) == {a.idempotency_key, b.idempotency_key}
        assert {r["status"] for r in rows.values()} == {"scheduled"}
        assert {r["event_id"] for r in rows.values()} == {"evt_src"}
        for r in rows.values():
            assert [h["status"] for h in store.history(r["id"])] == ["scheduled"]
        assert store.recipient("usr_c_1")["email"] == "usr_c_1@example.com"

    @pytest.mark.parametrize("seed", range(6))
    def test_a_batch_gives_the_rows_of_its_decisions_applied_one_by_one(self, engine: Any, seed: int) -> None:
        # Store.ingest writes a batch's sends and cancels in bulk; the rows must be those of
        # applying each decision in its own transaction, in order. Keys, rules and idempotency
        # keys are few, so sends, cancels, reschedules and taken keys collide often.
        rng = random.Random(seed)
        decisions: list[Any] = []
        for i in range(60):
            rule, key = (
                rng.choice(["client_booking_reminder_24h", "client_booking_reminder_30m"]),
                rng.choice(["bk_1", "bk_2", "bk_3"]),
            )
            roll = rng.random()
            if roll < 0.3:
                reason = rng.choice(["cancelled by booking.cancelled", "rescheduled by booking.rescheduled"])
                decisions.append(Cancel(rule, key, reason, f"evt_{i}"))
            else:
                send = make_send(
                    notification=rule,
                    key=key,
                    idem=f"idem_{rng.randrange(12)}",
                    send_at=NOW + timedelta(hours=i),
                    status="skipped" if roll > 0.9 else "scheduled",
                )
                decisions.append(replace(send, replan=roll < 0.55))
        bulk, single = Store(engine), Store(engine)
        result = bulk.ingest([(make_event(f"evt_bulk_{seed}"), decisions)], NOW)
        rows = [
            (r["notification"], r["key"], r["idempotency_key"], r["status"], r["reason"])
            for r in bulk.notifications(limit=1000, newest_first=True)
        ]
        with engine.begin() as conn:  # the same database, empty again
            for table in (history, notifications, events, recipients):
                conn.execute(table.delete())
        totals = [0, 0]
        for i, d in enumerate(decisions):
            one_result = single.ingest([(make_event(f"evt_one_{seed}_{i}"), [d])], NOW)
            totals[0] += one_result.scheduled
            totals[1] += one_result.cancelled
        assert [(r["notification"], r["key"], r["idempotency_key"], r["status"], r["reason"])
                for r in single.notifications(limit=1000, newest_first=True)] == rows
        assert [result.scheduled, result.cancelled] == totals
        assert result.cancelled > 0 and result.scheduled > 0

    def test_ingest_is_one_transaction(self, store: Store) -> None:
        good = make_send(key="bk_1")
        broken = make_send(key="bk_2", category=None)  # violates NOT NULL: the database refuses it
        with pytest.raises(IntegrityError):
            store.ingest([(make_event("evt_ok"), [good]), (make_event("evt_bad"), [broken])], NOW)
        assert store.event_count() == 0
        assert store.notifications() == []
        assert store.recipient("usr_c_1") is None

    def test_concurrent_batches_each_get_their_own_result_and_error(self, store: Store) -> None:
        # On SQLite concurrent ingests share a transaction (group commit); a broken batch among
        # them fails alone, and every other caller gets the result of its own batch.
        def one(i: int) -> Any:
            send = make_send(key=f"bk_{i}", category=None if i == 3 else "reminders")
            try:
                return store.ingest([(make_event(f"evt_g{i}"), [send]), (make_event("evt_shared"), [])], NOW)
            except IntegrityError:
                return "refused"

        sizes: list[int] = []
        if store._group is not None:  # SQLite: see how the writes were grouped
            commit = store._group._commit
            store._group._commit = lambda group: (sizes.append(len(group)), commit(group))  # type: ignore[method-assign]
        for _ in range(5):  # several rounds: the threads group differently each time
            results = run_threads(8, one)
            assert results[3] == "refused"
            ok = [r for i, r in enumerate(results) if i != 3]
            assert all(r.accepted[0].startswith("evt_g") and r.scheduled == 1 for r in ok)
            # the shared id is accepted by exactly one caller and a duplicate for the rest
            assert sum("evt_shared" in r.accepted for r in ok) <= 1
            assert all("evt_shared" in r.accepted or r.duplicates == ["evt_shared"] for r in ok)
            assert store.event_count() == 8
            rows = by_key(store)
            assert len(rows) == 7 and all(r["status"] == "scheduled" for r in rows.values())
            with store.engine.begin() as conn:
                for table in (history, notifications, events, recipients):
                    conn.execute(table.delete())
        if store.dialect == "sqlite":
            assert max(sizes) > 1, "no two batches ever shared a transaction"

    def test_ingest_many_fails_a_broken_batch_alone(self, store: Store) -> None:
        batches = [[(make_event("evt_m1"), [make_send(key="bk_1")]), (make_event("evt_m_shared"), [])],
                   [(make_event("evt_m2"), [make_send(key="bk_2", category=None)])],  # refused by NOT NULL
                   [],
                   [(make_event("evt_m3"), [make_send(key="bk_3")]), (make_event("evt_m_shared"), [])]]
        first, broken, empty, last = store.ingest_many(batches, NOW)
        assert (first.accepted, first.scheduled) == (["evt_m1", "evt_m_shared"], 1)
        assert isinstance(broken, IntegrityError)
        assert (empty.accepted, empty.scheduled) == ([], 0)
        assert (last.accepted, last.duplicates, last.scheduled) == (["evt_m3"], ["evt_m_shared"], 1)
        assert store.event_count() == 3  # evt_m2 went with its batch
        assert {r["key"] for r in store.notifications()} == {"bk_1", "bk_3"}
        assert store.ingest_many([], NOW) == []
        with pytest.raises(IntegrityError):  # a single batch's error is the transaction's
            store.ingest_many([[(make_event("evt_m4"), [make_send(key="bk_4", category=None)])]], NOW)
        assert store.event_count() == 3

    def test_ingest_many_writes_the_batches_together_with_each_its_own_counts(self, store: Store,
                                                                             monkeypatch: Any) -> None:
        import engine.store.ingest as ingest_module

        one_by_one: list[int] = []
        each = ingest_module.each_in_savepoint
        monkeypatch.setattr(ingest_module, "each_in_savepoint",
                            lambda cur, ops, wrap: (one_by_one.append(len(ops)), each(cur, ops, wrap))[1])
        self.ingest(store, make_send(key="bk_old", idem="idem_old"))
        batches = [
            [(make_event("evt_t1"), [make_send(key="bk_1"), make_send(key="bk_2")]), (make_event("evt_t_shared"), [])],
            [(make_event("evt_t2"), [Cancel("client_booking_reminder_24h", "bk_1", "cancelled by test", "evt_t2")])],
            [
                (
                    make_event("evt_t3"),
                    [
                        make_send(key="bk_3"),
                        Cancel("client_booking_reminder_24h", "bk_old", "cancelled by test", "evt_t3"),
                    ],
                ),
                (make_event("evt_t_shared"), []),
            ],
        ]
        first, second, third = store.ingest_many(batches, NOW)
        assert one_by_one == []  # written together, no request in a savepoint of its own
        assert (first.accepted, first.scheduled, first.cancelled) == (["evt_t1", "evt_t_shared"], 2, 0)
        assert (second.accepted, second.scheduled, second.cancelled) == (["evt_t2"], 0, 1)
        assert (third.accepted, third.duplicates, third.scheduled, third.cancelled) == (
            ["evt_t3"],
            ["evt_t_shared"],
            1,
            1,
        )
        assert {r["key"]: r["status"] for r in store.notifications()} == {
            "bk_old": "cancelled", "bk_1": "cancelled", "bk_2": "scheduled", "bk_3": "scheduled"}

    def test_ingest_many_counts_a_send_whose_key_two_batches_share_for_the_first(self, store: Store) -> None:
        # Written together, one statement cannot say which batch's send was stored: the group is
        # written again batch by batch, and the counts are those of applying the batches in order.
        batches = [[(make_event("evt_k1"), [make_send(key="bk_1", idem="idem_shared"), make_send(key="bk_9")])],
                   [(make_event("evt_k2"), [make_send(key="bk_2", idem="idem_shared")])],
                   [(make_event("evt_k3"), [make_send(key="bk_3")])]]
        first, second, third = store.ingest_many(batches, NOW)
        assert [first.scheduled, second.scheduled, third.scheduled] == [2, 0, 1]
        assert [r.accepted for r in (first, second, third)] == [["evt_k1"], ["evt_k2"], ["evt_k3"]]
        assert sorted(r["key"] for r in store.notifications()) == ["bk_1", "bk_3", "bk_9"]
        assert store.event_count() == 3

    def test_a_repeated_event_id_changes_nothing(self, store: Store) -> None:
        first = make_send(key="bk_1")
        self.ingest(store, first, event=make_event("evt_1"))
        before = store.notifications()
        again = store.ingest(
            [
                (
                    make_event("evt_1"),
                    [make_send(key="bk_9"), Cancel(first.notification, "bk_1", "cancelled by x", "evt_1")],
                )
            ],
            NOW,
        )
        assert (again.accepted, again.duplicates, again.scheduled, again.cancelled) == ([], ["evt_1"], 0, 0)
        assert store.notifications() == before
        assert store.event_count() == 1
        # Repeats inside one batch: the first is accepted, the rest are duplicates.
        batch = store.ingest([(make_event("evt_2"), [make_send(key="bk_2")]),
                              (make_event("evt_2"), [make_send(key="bk_3")])], NOW)
        assert (batch.accepted, batch.duplicates, batch.scheduled) == (["evt_2"], ["evt_2"], 1)

    def test_the_same_event_ingested_concurrently_is_accepted_once(self, store: Store) -> None:
        # A client retrying a slow POST /events while the first request is still being stored.
        rounds = 10
        for n in range(rounds):
            def ingest(i: int, n: int = n) -> Any:
                return store.ingest(
                    [(make_event(f"evt_race_{n}"), [make_send(key=f"bk_{n}_{i}", recipient=person(f"usr_{i}"))])], NOW
                )

            results = run_threads(4, ingest)
            assert sorted(len(r.accepted) for r in results) == [0, 0, 0, 1]
            assert all(r.duplicates == [f"evt_race_{n}"] for r in results if not r.accepted)
        assert store.event_count() == rounds and len(store.notifications(limit=1000)) == rounds

    def test_duplicates_are_listed_once_per_repeat(self, store: Store) -> None:
        self.ingest(store, event=make_event("evt_old"))
        result = store.ingest([(make_event("evt_old"), []), (make_event("evt_new"), []), (make_event("evt_old"), []),
                               (make_event("evt_new"), [])], NOW)
        assert (result.accepted, sorted(result.duplicates)) == (["evt_new"], ["evt_new", "evt_old", "evt_old"])

    def test_a_send_whose_idempotency_key_is_live_is_not_stored_twice(self, store: Store) -> None:
        a = make_send(key="bk_1", idem="same-key")
        self.ingest(store, a)
        self.ingest(store, make_send(key="bk_1", idem="same-key"))
        assert len(store.notifications()) == 1

    def test_concurrent_sends_of_one_idempotency_key_store_one_row(self, store: Store) -> None:
        # Separate transactions racing (on PostgreSQL truly in parallel): the unique index on live
        # keys lets one row in; the others store nothing and report nothing scheduled.
        results = run_threads(8, lambda i: self.ingest(store, make_send(key=f"bk_{i}", idem="raced-key")))
        assert sum(r.scheduled for r in results) == 1
        assert [r["idempotency_key"] for r in store.notifications()] == ["raced-key"]
        # Once that row no longer holds the key (cancelled), the key can be used again.
        [row] = store.notifications()
        store.ingest(
            [(make_event("evt_cancel_raced"), [Cancel(row["notification"], row["key"], "cancelled by test", "e")])], NOW
        )
        assert self.ingest(store, make_send(key="bk_again", idem="raced-key")).scheduled == 1

    # -- cancel and reschedule ----------------------------------------------------------------------
    def test_cancel_touches_only_pending_rows_of_that_notification_and_key(self, store: Store) -> None:
        later, due = NOW + timedelta(hours=1), NOW - timedelta(minutes=1)
        sends = {
            "scheduled": make_send(key="bk_1", send_at=later),
            "queued": make_send(key="bk_1", send_at=due),
            "sending": make_send(key="bk_1", send_at=due - timedelta(seconds=1)),
            "sent": make_send(key="bk_1", send_at=due - timedelta(seconds=2)),
            "other_key": make_send(key="bk_2", send_at=later),
            "other_rule": make_send(key="bk_1", send_at=later, notification="client_booking_reminder_30m"),
        }
        self.ingest(store, *sends.values())
        ids = {name: r["id"] for name, s in sends.items() for r in [by_key(store)[s.idempotency_key]]}
        assert sorted(store.queue_due(NOW)) == sorted([ids["queued"], ids["sending"], ids["sent"]])
        store.claim(ids["sending"], NOW)
        sent = store.claim(ids["sent"], NOW)
        assert store.finish(sent, "sent", NOW, request_id="req-1")

        result = store.ingest(
            [
                (
                    make_event("evt_cancel"),
                    [Cancel("client_booking_reminder_24h", "bk_1", "cancelled by booking.cancelled", "evt_cancel")],
                )
            ],
            NOW,
        )
        assert result.cancelled == 2
        status = {name: one(store, i)["status"] for name, i in ids.items()}
        assert status == {"scheduled": "cancelled", "queued": "cancelled", "sending": "sending", "sent": "sent",
                          "other_key": "scheduled", "other_rule": "scheduled"}
        assert one(store, ids["scheduled"])["reason"] == "cancelled by booking.cancelled"
        assert store.history(ids["queued"])[-1]["status"] == "cancelled"
        # A cancelled row is never claimed, even if its id is still in the queue.
        assert store.claim(ids["queued"], NOW) is None

    def test_reschedule_replaces_pending_reminders(self, url: str, make_runtime: Any) -> None:
        rt = make_runtime(url)
        start, moved = NOW + timedelta(days=3), NOW + timedelta(days=5)
        rt.emit(booking_confirmed("evt_b1", "bk_1", start, NOW), now=NOW)
        rt.emit(
            booking_rescheduled("evt_b2", "bk_1", start, moved, NOW + timedelta(minutes=5)),
            now=NOW + timedelta(minutes=5),
        )
        for rule, offset in (
            ("client_booking_reminder_24h", timedelta(hours=24)),
            ("client_booking_reminder_30m", timedelta(minutes=30)),
            ("practitioner_session_reminder_24h", timedelta(hours=24)),
        ):
            rows = rt.store.notifications(notification=rule)
            assert [(r["status"], r["send_at"]) for r in rows] == [
                ("cancelled", start - offset),
                ("scheduled", moved - offset),
            ], rule
            assert rows[0]["reason"] == "rescheduled by booking.rescheduled"

    def test_a_reschedule_does_not_revive_cancelled_reminders(self, url: str, make_runtime: Any) -> None:
        rt = make_runtime(url)
        start, moved = NOW + timedelta(days=3), NOW + timedelta(days=5)
        rt.emit(booking_confirmed("evt_c1", "bk_1", start, NOW), now=NOW)
        rt.emit(booking_cancelled("evt_c2", "bk_1", start, NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
        rt.emit(
            booking_rescheduled("evt_c3", "bk_1", start, moved, NOW + timedelta(minutes=2)),
            now=NOW + timedelta(minutes=2),
        )
        reminders = [r for r in rt.store.notifications(limit=100) if "reminder" in r["notification"]]
        assert len(reminders) == 4
        # As tests/scenarios/cancelled_then_rescheduled.yaml has `engine preview` decide.
        assert {(r["status"], r["reason"]) for r in reminders} == {("cancelled", "cancelled by booking.cancelled")}

    # -- the queue hand-off -------------------------------------------------------------------------
    def test_queue_due_hands_each_due_row_to_exactly_one_caller(self, store: Store) -> None:
        due = [make_send(key=f"bk_{i}", send_at=NOW - timedelta(seconds=i % 7)) for i in range(120)]
        not_due = make_send(key="later", send_at=NOW + timedelta(seconds=1))
        self.ingest(store, *due, not_due)
        expected = sorted(
            r["id"] for r in store.notifications(limit=1000) if r["idempotency_key"] != not_due.idempotency_key
        )

        def drain(_: int) -> list[int]:
            got: list[int] = []
            while True:
                batch = store.queue_due(NOW, limit=9)
                if not batch:
                    return got
                got.extend(batch)

        handed = [i for part in run_threads(4, drain) for i in part]
        assert len(handed) == len(set(handed)), "a row was handed to two callers"
        assert sorted(handed) == expected
        assert {r["status"] for r in store.notifications(limit=1000) if r["id"] in expected} == {"queued"}
        assert store.queue_due(NOW) == []

    def test_claim_is_atomic(self, store: Store) -> None:
        self.ingest(store, make_send())
        [row_id] = store.queue_due(NOW)
        claims = run_threads(4, lambda i: store.claim(row_id, NOW))
        winners = [c for c in claims if c is not None]
        assert len(winners) == 1
        assert winners[0].attempts == 1 and winners[0].message["template"] == "TEMPLATE_V1"
        assert one(store, row_id)["status"] == "sending"
        assert store.claim(row_id, NOW) is None

    def test_only_queued_rows_can_be_claimed(self, store: Store) -> None:
        s = make_send(send_at=NOW + timedelta(hours=1))
        self.ingest(store, s)
        row_id = by_key(store)[s.idempotency_key]["id"]
        assert store.claim(row_id, NOW) is None  # scheduled, not yet due
        assert one(store, row_id)["status"] == "scheduled"

    def test_finish_with_a_stale_fencing_token_is_refused(self, store: Store) -> None:
        self.ingest(store, make_send())
        [row_id] = store.queue_due(NOW)
        first = store.claim(row_id, NOW)
        # The first worker hangs; its claim goes stale and another worker takes the row over.
        later = NOW + timedelta(minutes=10)
        assert store.queue_due(later, stale_sending=timedelta(minutes=2)) == [row_id]
        second = store.claim(row_id, later)
        assert (first.attempts, second.attempts) == (1, 2)
        assert store.finish(first, "sent", later, request_id="late-1") is None
        assert store.finish(first, "failed", later, error="boom") is None
        row = one(store, row_id)
        assert (row["status"], row["request_id"]) == ("sending", None)
        assert store.finish(second, "sent", later, request_id="req-2") == "sent"
        row = one(store, row_id)
        assert (row["status"], row["request_id"], row["attempts"]) == ("sent", "req-2", 2)
        assert [h["status"] for h in store.history(row_id)] == ["scheduled", "sending", "sending", "sent"]

    def test_stale_queued_and_sending_rows_are_queued_again(self, store: Store) -> None:
        a, b = make_send(key="a"), make_send(key="b")
        self.ingest(store, a, b)
        ids = store.queue_due(NOW)
        assert len(ids) == 2
        lost = by_key(store)[a.idempotency_key]["id"]  # its queue task was lost
        dying = by_key(store)[b.idempotency_key]["id"]  # its worker died mid-send
        assert store.claim(dying, NOW) is not None
        after = timedelta(seconds=30)
        assert (
            store.queue_due(NOW + timedelta(seconds=29), requeue_after=after, stale_sending=timedelta(minutes=2)) == []
        )
        assert store.queue_due(
            NOW + timedelta(seconds=31), requeue_after=after, stale_sending=timedelta(minutes=2)
        ) == [lost]
        assert store.queue_due(NOW + timedelta(minutes=2, seconds=1), requeue_after=timedelta(hours=1),
                               stale_sending=timedelta(minutes=2)) == [dying]
        assert one(store, dying)["status"] == "queued"
        assert store.claim(dying, NOW + timedelta(minutes=3)).attempts == 2

    def test_schedule_direct_returns_its_own_row_even_under_concurrency(self, store: Store) -> None:
        def schedule(i: int) -> list[tuple[str, int | None]]:
            out = []
            for j in range(25):  # one recipient each: rows of one recipient serialize on its upsert
                s = make_send(key=f"t{i}-{j}", idem=f"direct-{i}-{j}", recipient=person(f"usr_{i}_{j}"))
                out.append((s.idempotency_key, store.schedule_direct(s, NOW)))
            return out

        pairs = [p for part in run_threads(4, schedule) for p in part]
        rows = by_key(store)
        assert all(row_id == rows[key]["id"] for key, row_id in pairs)
        assert store.schedule_direct(make_send(idem="direct-0-0"), NOW) is None  # its key is taken

    # -- recipients -----------------------------------------------------------------------------------
    def test_a_recipient_row_changes_only_when_the_person_does(self, store: Store) -> None:
        def stored() -> tuple[Any, ...]:
            with store.engine.connect() as conn:
                return tuple(conn.execute(select(recipients.c.profile, recipients.c.timezone, recipients.c.updated_at)
                                          .where(recipients.c.id == "usr_r")).one())

        alice = {"id": "usr_r", "email": "r@example.com", "name": "R", "timezone": "Europe/Paris"}
        store.import_recipients([alice], NOW)
        first = stored()
        store.import_recipients([alice], NOW + timedelta(hours=1))  # the same person: the row is left as it was
        assert stored() == first
        store.import_recipients([{**alice, "timezone": None}], NOW + timedelta(hours=2))
        assert stored()[1:] == (None, NOW + timedelta(hours=2))
        store.import_recipients([{**alice, "timezone": None, "name": "Renamed"}], NOW + timedelta(hours=3))
        assert stored()[2] == NOW + timedelta(hours=3) and store.recipient("usr_r")["name"] == "Renamed"
        store.import_recipients([alice], NOW + timedelta(hours=4))
        assert stored()[1:] == ("Europe/Paris", NOW + timedelta(hours=4))

    # -- preferences ----------------------------------------------------------------------------------
    def test_preferences_set_and_clear(self, store: Store) -> None:
        assert store.preferences("usr_1") == {}
        got = store.set_preferences(
            "usr_1", {"client_new_message": False, "reminders": False, "client_welcome:email": True}, NOW
        )
        assert got == {"client_new_message": False, "reminders": False, "client_welcome:email": True}
        got = store.set_preferences("usr_1", {"client_new_message": True, "reminders": None}, NOW)
        assert got == {"client_new_message": True, "client_welcome:email": True}
        assert store.preferences("usr_2") == {}

    # -- webhooks ---------------------------------------------------------------------------------------
    def test_record_delivery_deduplicates_and_keeps_the_furthest_status(self, store: Store) -> None:
        self.ingest(store, make_send())
        [row_id] = store.queue_due(NOW)
        assert store.finish(store.claim(row_id, NOW), "sent", NOW, request_id="1-abc")
        assert store.record_delivery("1-abc", "opened", NOW) == "applied"
        assert store.record_delivery("1-abc", "opened", NOW) == "duplicate"
        assert store.record_delivery("1-abc", "delivered", NOW) == "stale"  # arrived after opened
        assert one(store, row_id)["delivery_status"] == "opened"
        assert store.record_delivery("1-abc", "clicked", NOW) == "applied"
        assert one(store, row_id)["delivery_status"] == "clicked"
        assert store.record_delivery("no-such-id", "delivered", NOW) == "pending"  # kept for its send
        statuses = [h["status"] for h in store.history(row_id)]
        assert statuses.count("opened") == 1 and statuses[-1] == "clicked"

    # -- digests ----------------------------------------------------------------------------------------
    def test_digests_collect_and_close_once(self, url: str, make_runtime: Any) -> None:
        rt = make_runtime(url)
        store = rt.store
        week = NOW  # Monday 2026-03-02; payments on Tuesday and Thursday, Europe/Berlin
        first = payment_succeeded("evt_p1", "pay_1", week + timedelta(days=1), 7000)
        rt.emit(first, now=week + timedelta(days=1))
        rt.emit(payment_succeeded("evt_p2", "pay_2", week + timedelta(days=3), 3500), now=week + timedelta(days=3))
        repeat = payment_succeeded("evt_p2", "pay_2", week + timedelta(days=3), 3500)
        rt.emit(repeat, now=week + timedelta(days=3))
        send_at = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin (CET)
        assert store.due_digests(send_at - timedelta(seconds=1)) == []
        [digest] = store.due_digests(send_at)
        assert digest["send_at"] == send_at
        assert digest["period_start"] == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # Berlin midnight, as an instant
        assert [i["payment"]["id"] for i in digest["items"]] == ["pay_1", "pay_2"]

        rt.sweep(send_at)  # closes it and (no queue here) delivers it
        rt.sweep(send_at + timedelta(minutes=1))  # another sweep finds nothing more to close
        assert store.due_digests(send_at + timedelta(days=1)) == []
        assert store.close_digest(digest["bucket"], make_send(), send_at) is False
        [row] = store.notifications(notification="practitioner_weekly_earnings_summary", with_payload=True)
        assert (row["status"], row["send_at"]) == ("sent", send_at)
        data = row["message"]["data"]
        assert (data["totals"], data["count"]) == ([{"currency": "EUR", "amount": 10500, "count": 2}], 2)

        # The live engine renders exactly what the pure core (and so `engine preview`) renders.
        from engine.core.decide import DigestItem, decide
        from engine.core.events import parse_event

        [item] = [d for d in decide(rt.config, parse_event(first, rt.config), week) if isinstance(d, DigestItem)]
        rule = rt.config.notifications["practitioner_weekly_earnings_summary"]
        expected = digest_send(rt.config, rule, item.recipient, digest["items"], item.period_start, item.period_end,
                               item.send_at, rt.renderer(send_at))
        assert row["idempotency_key"] == expected.idempotency_key
        assert "2026-03-02" in row["idempotency_key"]  # the practitioner's Monday, not the UTC date (Sunday 23:00)
        assert data == expected.data
        assert data["period_start"] == "2026-03-02T00:00:00+01:00"

    # -- retention ---------------------------------------------------------------------------------------
    def test_cleanup_applies_retention(self, store: Store) -> None:
        old = NOW - timedelta(days=200)
        done_old, pending_old = (
            make_send(key="done", send_at=old),
            make_send(key="pending", send_at=old + timedelta(days=365)),
        )
        self.ingest(store, done_old, pending_old, event=make_event("evt_old", old), now=old)
        [old_id] = store.queue_due(old)
        store.finish(store.claim(old_id, old), "sent", old, request_id="r-old")
        recent = make_send(key="recent", send_at=NOW - timedelta(days=1))
        self.ingest(store, recent, event=make_event("evt_recent", NOW - timedelta(days=1)), now=NOW - timedelta(days=1))
        [recent_id] = store.queue_due(NOW)
        store.finish(store.claim(recent_id, NOW), "sent", NOW, request_id="r-new")

        removed = store.cleanup(NOW, timedelta(days=180), timedelta(days=90))
        assert removed["notifications"] == 1 and removed["events"] == 1
        assert {r["idempotency_key"] for r in store.notifications()} == {
            pending_old.idempotency_key,
            recent.idempotency_key,
        }
        assert store.history(old_id) == []  # history goes with its row
        with store.engine.connect() as conn:
            assert conn.scalars(select(events.c.id)).all() == ["evt_recent"]
            assert conn.scalar(select(history.c.id).where(history.c.notification_id == old_id)) is None

    # -- encryption -----------------------------------------------------------------------------------
    def test_encrypted_columns_hide_personal_data_and_keys_rotate(self, engine: Any) -> None:
        from cryptography.fernet import Fernet, InvalidToken

        old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        secret = "very.private.person@example.com"
        who = {"id": "usr_enc", "email": secret, "name": "Private Person", "timezone": "UTC"}
        store = Store(engine, Codec((old_key,)))
        event = Event("evt_enc", "booking.confirmed", NOW, {"client": who})
        store.ingest([(event, [make_send(recipient=who, key="bk_enc")])], NOW)
        store.import_recipients([{**who, "id": "usr_enc2"}], NOW)

        with engine.connect() as conn:
            stored = [conn.scalar(select(events.c.payload)), *conn.scalars(select(notifications.c.payload)),
                      *conn.scalars(select(recipients.c.profile))]
            everything = " ".join(str(v) for table in (events, notifications, recipients, digests)
                                  for row in conn.execute(select(table)) for v in row)
        assert len(stored) == 4 and all(s.startswith("fernet:") for s in stored)
        assert secret not in everything and "Private Person" not in everything
        assert store.recipient("usr_enc")["email"] == secret

        rotated = Store(engine, Codec((new_key, old_key)))  # new key first, old one still reads
        assert rotated.recipient("usr_enc")["email"] == secret
        assert rotated.notifications(with_payload=True)[0]["message"]["to"]["email"] == secret
        rotated.import_recipients([{**who, "id": "usr_new"}], NOW)
        assert Store(engine, Codec((new_key,))).recipient("usr_new")["email"] == secret
        with pytest.raises(InvalidToken):
            Store(engine, Codec((old_key,))).recipient("usr_new")
        with pytest.raises(ValueError, match="ENGINE_ENCRYPTION_KEY"):
            Store(engine).recipient("usr_enc")


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        return sqlite_url

    def test_processes_starting_together_on_a_new_file(self, tmp_path: Any) -> None:
        # Switching a new file to WAL races between connections (serve and worker starting together).
        for n in range(20):
            engines = [connect(f"sqlite:///{tmp_path / f'fresh-{n}.db'}") for _ in range(3)]
            try:
                run_threads(3, lambda i, engines=engines: upgrade(engines[i]))
            finally:
                for e in engines:
                    e.dispose()


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url
