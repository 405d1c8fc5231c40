"""Data duties on both stores: `engine recipients erase ID` leaves nothing of the person in any
table, retention redacts what it keeps, `engine db reencrypt` makes the older key removable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import inspect, select, table, text

from engine.store.codec import Codec
from engine.store.repository import Store

from .support import NOW, booking_confirmed, payment_succeeded

MAYA = ("usr_c_1", "usr_c_1@example.com", "maya chen")  # what identifies the person erased


def every_text(engine: Any, codec: Codec) -> str:
    """Every value of every row of every table, lower-cased, stored JSON decoded (and decrypted)."""
    found = []
    schema = inspect(engine)
    tables = {name: [c["name"] for c in schema.get_columns(name)] for name in schema.get_table_names()}
    with engine.execution_options(read_only=True).connect() as conn:  # a reader: it takes no write lock
        for name, columns in tables.items():
            for row in conn.execute(select(*[text(f'"{c}"') for c in columns]).select_from(table(name))):
                for value in row:
                    if isinstance(value, str) and value.startswith("fernet:"):
                        value = codec.loads(value)
                    found.append(str(value))
    return "\n".join(found).lower()


def a_store_with_two_clients(rt: Any) -> None:
    """Maya (usr_c_1) and Lena (usr_c_2) book the same practitioner; Maya pays, opts out of a
    notification, and some of her sends have gone out and been delivered."""
    start = NOW + timedelta(days=3)
    rt.emit(booking_confirmed("evt_maya", "bk_1", start, NOW), now=NOW)
    lena = booking_confirmed("evt_lena", "bk_2", start, NOW, client="usr_c_2")
    lena["data"]["client"]["name"] = "Lena Park"
    rt.emit(lena, now=NOW)
    rt.emit(payment_succeeded("evt_pay", "pay_1", NOW), now=NOW)
    rt.store.set_preferences("usr_c_1", {"client_booking_reminder_30m": False}, NOW)
    rt.sweep(NOW)
    [sent] = rt.store.notifications(notification="client_booking_confirmation", recipient_id="usr_c_1")
    rt.store.record_delivery(sent["request_id"], "delivered", NOW)


def test_erase_leaves_nothing_of_the_person_in_any_table(cli: Any, db_url: str, make_runtime: Any) -> None:
    rt = make_runtime(db_url)
    a_store_with_two_clients(rt)
    before = every_text(rt.store.engine, rt.store.codec)
    assert all(m in before for m in MAYA)
    code, out, err = cli("recipients", "erase", "usr_c_1", "--yes", ENGINE_DATABASE_URL=db_url)
    assert code == 0, err
    assert "erased 'usr_c_1':" in out and "recipients removed: 1" in out and "preferences removed: 1" in out
    assert "events redacted: 2" in out  # her booking and her payment; Lena's booking does not name her

    after = every_text(rt.store.engine, rt.store.codec)
    assert [m for m in MAYA if m in after] == []
    assert "usr_c_2@example.com" in after and "lena park" in after  # nobody else's data went
    assert "jonas weber" in after
    pending = [r for r in rt.store.notifications(limit=1000) if r["reason"] == "recipient erased"]
    assert pending and {r["status"] for r in pending} == {"cancelled"}
    assert rt.store.recipient("usr_c_2") is not None

    code, out, _ = cli("recipients", "erase", "usr_c_1", "--yes", ENGINE_DATABASE_URL=db_url)
    assert (code, out.strip()) == (0, "nothing is stored about 'usr_c_1'")


def test_erase_asks_first_and_a_no_changes_nothing(cli: Any, sqlite_url: str, make_runtime: Any,
                                                   monkeypatch: Any) -> None:
    import io

    rt = make_runtime(sqlite_url)
    a_store_with_two_clients(rt)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = cli("recipients", "erase", "usr_c_1", ENGINE_DATABASE_URL=sqlite_url)
    assert code == 130 and rt.store.recipient("usr_c_1") is not None


def test_retention_redacts_what_it_keeps_and_purges_recipients_nobody_names(db_url: str, make_runtime: Any) -> None:
    rt = make_runtime(db_url)
    old = NOW - timedelta(days=100)  # past the events' 90 days, within the notifications' 180
    rt.emit(booking_confirmed("evt_old", "bk_old", old + timedelta(days=3), old), now=old)
    rt.store.set_preferences(
        "usr_c_1", {"client_booking_reminder_30m": False, "client_booking_reminder_24h": True}, old
    )
    rt.sweep(old + timedelta(days=4))  # everything of that booking went out long ago
    rt.emit(booking_confirmed("evt_new", "bk_new", NOW + timedelta(days=3), NOW, client="usr_c_2"), now=NOW)

    removed = rt.cleanup(NOW)
    assert removed["events"] == 1 and removed["notifications"] == 0
    assert removed["recipients"] == 1 and removed["notifications redacted"] >= 1
    kept = rt.store.notifications(limit=1000, with_payload=True)
    old_rows = [r for r in kept if r["key"] == "bk_old"]
    assert old_rows and all(r["message"] is None for r in old_rows)  # kept for the statistics, without the message
    assert {r["status"] for r in old_rows} <= {"sent", "skipped"}
    assert all(r["message"] is not None for r in kept if r["key"] == "bk_new" and r["status"] == "scheduled")
    assert rt.store.recipient("usr_c_1") is None and rt.store.recipient("usr_c_2") is not None
    assert rt.store.preferences("usr_c_1") == {"client_booking_reminder_30m": False}  # an opt-out is honoured still


def test_reencrypt_makes_the_old_key_removable(cli: Any, db_url: str, make_runtime: Any) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    plain = make_runtime(db_url)  # rows written before encryption was on
    plain.emit(booking_confirmed("evt_plain", "bk_p", NOW + timedelta(days=3), NOW, client="usr_c_9"), now=NOW)
    rt = make_runtime(db_url, encryption_keys=(old_key,))
    a_store_with_two_clients(rt)
    rows = [{k: v for k, v in r.items() if k != "message"} for r in rt.store.rows()]
    people = Store(rt.store.engine, Codec((old_key,))).people()

    code, out, err = cli("db", "reencrypt", ENGINE_DATABASE_URL=db_url, ENGINE_ENCRYPTION_KEY=f"{new_key},{old_key}")
    assert code == 0, err
    assert "events: 3 re-encrypted, 1 encrypted (were plain), 0 already under the newest key" in out
    code, out, err = cli("db", "reencrypt", ENGINE_DATABASE_URL=db_url, ENGINE_ENCRYPTION_KEY=f"{new_key},{old_key}")
    assert "events: 0 re-encrypted, 0 encrypted (were plain), 4 already under the newest key" in out  # resumable

    only_new = Store(rt.store.engine, Codec((new_key,)))
    assert [{k: v for k, v in r.items() if k != "message"} for r in only_new.rows()] == rows
    assert only_new.people() == people
    with rt.store.engine.connect() as conn:
        stored = conn.scalars(text("SELECT payload FROM events")).all()
    assert all(s.startswith("fernet:") for s in stored)
    assert [e["id"] for e in map(only_new.codec.loads, stored)]  # every event reads under the new key alone

    code, _, err = cli("db", "reencrypt", ENGINE_DATABASE_URL=db_url)
    assert code == 1 and "ENGINE_ENCRYPTION_KEY is not set" in err
