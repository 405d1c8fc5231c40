"""The record a scheduled send keeps is the engine's own (address, template id, data, channels),
encrypted like every stored payload; Courier's body is written from it when the send goes out.
A row stored in Courier's shape, as the engine wrote it before, goes out exactly as a new one, and
the reads show both alike, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from engine.core.rendering import Delivery
from engine.delivery import CourierBackend
from engine.delivery.message import courier_body, going_out, scheduled, scheduled_record
from engine.http.answers import row_json
from engine.store.tables import notifications
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, person

NOTIFICATION = "client_review_request"
AT = NOW + timedelta(hours=2)
WHO = person("usr_c_7", "Maya Chen", "America/New_York", phone="+447700900123")


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    runtime = make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2),
                           encryption_keys=(Fernet.generate_key().decode(),))
    rules = dict(runtime.config.notifications)  # by SMS too: the record keeps the phone number
    rules[NOTIFICATION] = replace(rules[NOTIFICATION], channels=("email", "sms"))
    runtime.config = replace(runtime.config, notifications=rules)
    return runtime


def courier_shaped(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the engine stored it before it kept its own shape: Courier's body as scheduled."""
    return {"message": {"to": record["to"], "template": record["template"], "data": record["data"],
                        "routing": {"method": "single", "channels": record["channels"]}}}


def schedule(rt: Any, key: str) -> dict[str, Any]:
    data = dict(rt.config.notifications[NOTIFICATION].example.data)
    row_id = rt.schedule(NOTIFICATION, WHO, AT, data, idempotency_key=key, now=NOW)
    return next(r for r in rt.store.notifications(with_payload=True) if r["id"] == row_id)


def store_payload(rt: Any, row_id: int, record: dict[str, Any]) -> None:
    with rt.store.engine.begin() as conn:
        conn.execute(update(notifications).where(notifications.c.id == row_id)
                     .values(payload=rt.store.codec.dumps(record)))


def test_a_send_keeps_the_engines_own_record_encrypted(rt: Any) -> None:
    row = schedule(rt, "review-1")
    assert row["message"] == {
        "to": {"user_id": "usr_c_7", "email": "usr_c_7@example.com", "phone_number": "+447700900123"},
        "template": row["template"], "data": row["message"]["data"], "channels": ["email", "sms"]}
    assert row["message"]["data"]["user_name"] == "Maya Chen"
    with rt.store.engine.connect() as conn:
        stored = conn.scalar(select(notifications.c.payload).where(notifications.c.id == row["id"]))
    assert stored.startswith("fernet:") and "usr_c_7@example.com" not in stored


def test_a_send_stored_in_courier_shape_goes_out_as_a_new_one(rt: Any, standin: CourierStandin) -> None:
    new, old = schedule(rt, "review-new"), schedule(rt, "review-old")
    assert new["message"]["data"] == old["message"]["data"]
    store_payload(rt, old["id"], courier_shaped(old["message"]))
    assert "message" in next(r for r in rt.store.notifications(with_payload=True) if r["id"] == old["id"])["message"]

    upcoming = {r["id"]: row_json(r) for r in rt.upcoming(AT, now=NOW)}  # what GET /notifications/upcoming shows
    assert upcoming[old["id"]]["message"] == upcoming[new["id"]]["message"] == courier_shaped(new["message"])
    assert upcoming[old["id"]]["data"] == upcoming[new["id"]]["data"] == new["message"]["data"]

    assert rt.sweep(AT) == 2
    bodies = {r["idempotency_key"]: r["body"]["message"] for r in standin.requests}
    went_new, went_old = bodies.pop(new["idempotency_key"]), bodies.pop(old["idempotency_key"])
    assert went_new["metadata"].pop("trace_id") == new["idempotency_key"]
    assert went_old["metadata"].pop("trace_id") == old["idempotency_key"]
    assert went_old == went_new and bodies == {}
    assert went_new["to"]["phone_number"] == "+447700900123" and went_new["data"] == new["message"]["data"]
    assert went_new["routing"] == {"method": "single", "channels": ["email", "sms"]}


RECORD = {"to": {"user_id": "usr_1", "email": "a@example.com"}, "template": "T_V1", "data": {"n": 1},
          "channels": ["email"]}
VERDICT = Delivery(("email", "inbox"), "T_V2", "all", "welcome", "account", None, "key-1")


def test_both_shapes_read_as_one_message() -> None:
    assert scheduled_record({"id": "usr_1", "email": "a@example.com", "phone": "+44"}, "T_V1", {"n": 1},
                            ("email",)) == RECORD  # the phone only for a send that may go by SMS
    assert scheduled(courier_shaped(RECORD)) == scheduled(RECORD)
    assert courier_body(scheduled(RECORD)) == courier_shaped(RECORD)
    assert going_out(courier_shaped(RECORD), VERDICT, NOW) == going_out(RECORD, VERDICT, NOW)
    body = courier_body(going_out(RECORD, VERDICT, NOW))["message"]
    assert (body["template"], body["routing"]) == ("T_V2", {"method": "all", "channels": ["email", "inbox"]})


def test_keys_of_a_courier_shaped_record_the_engine_does_not_write_go_out_as_they_were() -> None:
    stored = courier_shaped(RECORD)
    stored["message"]["brand_id"] = "BRAND_1"
    assert courier_body(going_out(stored, VERDICT, NOW))["message"]["brand_id"] == "BRAND_1"
