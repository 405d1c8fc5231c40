"""Hostile input: what the engine could accept but never store or send is refused at the door,
with the same answer on SQLite and PostgreSQL; what it accepts, it delivers.

Found by a red team: a recipient `usr_josé` was accepted and then failed every send (HTTP headers
are ASCII); CR, LF or NUL in an id, a 10 000-character id or a 401-digit amount were accepted and
then failed or skipped; on PostgreSQL, ids longer than their columns or a NUL anywhere were a 503
(retried for ever) while SQLite took them; concurrent copies of one signed request were all
accepted; a Courier trickling its answer a byte at a time held delivery threads for ever.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DataError, OperationalError

from engine.clock import utcnow
from engine.core import events
from engine.delivery import CourierBackend
from engine.delivery.courier import MAX_HEADER_KEY, header_key
from engine.delivery.message import Address, Message
from engine.http.app import build_app
from engine.signing import sign_ingest
from engine.store import tables
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import LiveServer, booking_confirmed, iso, payment_succeeded, person

TOKEN = "hostile-token"
SECRET = "hostile-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def rt(db_url: str, make_runtime: Any) -> Any:
    return make_runtime(db_url, ingest_token=TOKEN, ingest_secret=SECRET)


@pytest.fixture
def http(rt: Any) -> Iterator[httpx.Client]:
    with LiveServer(build_app(rt)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def confirmed(client: str = "usr_c_1", bid: str = "bk_1", eid: str = "evt_1") -> dict[str, Any]:
    now = utcnow()
    return booking_confirmed(eid, bid, now + timedelta(days=3), now, client=client)


def stored(rt: Any) -> tuple[int, int]:
    return rt.store.event_count(), len(rt.store.notifications(limit=10_000))


def _set(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = event
    *parents, last = path.split(".")
    for step in parents:
        node = node[step]
    node[last] = value
    return event


def _long_fraction(event: dict[str, Any]) -> dict[str, Any]:
    start = event["data"]["booking"]["start_time"][:19]  # to the second
    return _set(event, "data.booking.start_time", start + "." + "1" * 600 + "Z")  # a valid RFC 3339 instant


HOSTILE: list[tuple[str, Callable[[], dict[str, Any]], str, str]] = [
    ("person id of 201 characters", lambda: confirmed(client="u" * 201), "$.data.client.id", "at most 200"),
    ("person id of 10 000 characters", lambda: confirmed(client="u" * 10_000), "$.data.client.id", "at most 200"),
    ("booking id (the rule key) of 301", lambda: confirmed(bid="b" * 301), "$.data.booking.id", "at most 300"),
    ("event id of 201", lambda: confirmed(eid="e" * 201), "$.id", "at most 200"),
    ("NUL in a person id", lambda: confirmed(client="usr_\x00"), "$.data.client.id", "U+0000"),
    ("LF in a person id", lambda: confirmed(client="usr_\nx"), "$.data.client.id", "U+000A"),
    ("CR in the event id", lambda: confirmed(eid="evt_\r1"), "$.id", "U+000D"),
    (
        "NUL in a text",
        lambda: _set(confirmed(), "data.booking.service.name", "Breath\x00work"),
        "$.data.booking.service.name",
        "U+0000",
    ),
    ("NUL in a field name", lambda: _set(confirmed(), "data.booking.x\x00y", 1), "$.data.booking", "control character"),
    (
        "CR LF in an email address",
        lambda: _set(confirmed(), "data.client.email", "a@example.com\r\nBcc: b@example.com"),
        "$.data.client.email",
        "U+000D",
    ),
    (
        "an amount of 401 digits",
        lambda: _set(payment_succeeded("evt_p", "pay_1", utcnow()), "data.payment.amount", int("9" * 401)),
        "$.data.payment.amount",
        "2**53 - 1",
    ),
    ("an integer just past 2**53 - 1", lambda: _set(confirmed(), "data.extra", 2**53), "$.data.extra", "2**53 - 1"),
    (
        "a start time making the reminder's idempotency key 600+",
        lambda: _long_fraction(confirmed()),
        "$.data.booking.start_time",
        "at most 500",
    ),
]


@pytest.mark.parametrize("name, make, path, limit", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_what_cannot_be_stored_or_sent_is_a_422_naming_the_path_on_both_stores(
        http: httpx.Client, rt: Any, name: str, make: Callable[[], dict[str, Any]], path: str, limit: str) -> None:
    r = http.post("/events", json=make(), headers=AUTH)
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert any(p["path"] == path and limit in p["message"] for p in problems), problems
    assert all(len(p["message"]) < 300 for p in problems)  # the value itself is never echoed
    assert stored(rt) == (0, 0)


def test_limits_at_the_edge_are_accepted_and_stored_on_both_stores(http: httpx.Client, rt: Any) -> None:
    event = confirmed(client="u" * 200, bid="b" * 300, eid="e" * 200)
    event["data"]["booking"]["location"] = "Room 4\nSecond floor\t(left)"  # text may hold line breaks and tabs
    event["data"]["extra"] = [2**53 - 1, -(2**53 - 1)]
    r = http.post("/events", json=event, headers=AUTH)
    assert r.status_code == 202, r.text
    assert stored(rt) == (1, 6)


def test_a_batch_names_the_event_of_each_problem(http: httpx.Client, rt: Any) -> None:
    body = {"events": [confirmed(eid="evt_ok"), confirmed(client="u" * 201, eid="evt_bad")]}
    r = http.post("/events", json=body, headers=AUTH)
    assert r.status_code == 422
    assert [p["path"] for p in r.json()["problems"]] == ["$.events[1].data.client.id"]
    assert stored(rt) == (0, 0)


def test_the_limits_match_the_columns_that_hold_the_values() -> None:
    assert events.MAX_ID == tables.events.c.id.type.length == tables.recipients.c.id.type.length
    assert (
        events.MAX_ID
        == tables.notifications.c.recipient_id.type.length
        == tables.preferences.c.recipient_id.type.length
    )
    assert tables.notifications.c.key.type.length == events.MAX_RULE_KEY
    assert tables.notifications.c.idempotency_key.type.length == events.MAX_STORED_KEY
    assert tables.notifications.c.throttle_key.type.length == events.MAX_STORED_KEY


def test_the_openapi_document_states_the_limits(http: httpx.Client) -> None:
    from jsonschema import Draft202012Validator

    doc = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    validator = Draft202012Validator({"$ref": "#/components/schemas/BookingConfirmed", "components": doc["components"]})
    assert validator.is_valid(confirmed(client="u" * 200))
    for bad in (confirmed(client="u" * 201), confirmed(bid="b" * 301), confirmed(client="a\x00"), confirmed(eid="e\n")):
        assert not validator.is_valid(bad)
    assert schemas["amount"]["maximum"] == 2**53 - 1
    assert "2**53 - 1" in doc["info"]["description"] and "500" in doc["info"]["description"]


# -- what is accepted is deliverable ---------------------------------------------------------------------
def test_header_keys_are_printable_ascii_stable_and_distinct() -> None:
    plain = "client_welcome:usr_c_1:evt_1"
    assert header_key(plain) == plain  # keys already safe are sent as they were
    hostile = ["client_welcome:usr_josé:evt_1", "k:usr_\r\nX-Evil: 1", "k:\x00", "k" * 256, " padded ", "日本"]
    made = [header_key(k) for k in hostile]
    for key in made:
        assert re.fullmatch(r"[\x21-\x7e]+", key) and len(key) <= MAX_HEADER_KEY, key
    assert made == [header_key(k) for k in hostile]  # the same on every attempt
    assert len(set(made)) == len(made)
    assert made[0] == "client_welcome:usr_jos_:evt_1~" + hashlib.sha256(hostile[0].encode()).hexdigest()


def test_a_non_ascii_recipient_is_accepted_and_delivered_through_courier(db_url: str, make_runtime: Any,
                                                                          standin: CourierStandin) -> None:
    rt = make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=5))
    now = utcnow()
    event = {"id": "evt_josé", "type": "user.registered", "occurred_at": iso(now), "data": {
        "user": {**person("usr_josé", "José Ñúñez"), "role": "client"}, "verification_url": "https://estuary.app/v?t=1"}}
    assert rt.emit(event, now=now).accepted == ["evt_josé"]
    rt.sweep(now)
    rows = rt.store.notifications(recipient_id="usr_josé", limit=10)
    assert rows and {r["status"] for r in rows} == {"sent"}
    sent = {r["headers"]["idempotency-key"] for r in standin.requests}
    assert all(k.isascii() for k in sent) and len(sent) == len(rows)
    assert {r["body"]["message"]["to"]["user_id"] for r in standin.requests} == {"usr_josé"}


# -- a slow Courier ------------------------------------------------------------------------------------------
MESSAGE = Message(Address("usr_1", "a@example.com"), "T", {}, ("email",))


def test_a_trickling_courier_is_a_timeout_within_the_total_deadline(standin: CourierStandin) -> None:
    backend = CourierBackend(COURIER_TOKEN, standin.url, timeout=1.0)
    standin.trickle_next(1, 0.05)  # ~4 s of headers, a byte every 50 ms: each read well within 1 s
    started = time.monotonic()
    outcome = backend.send(MESSAGE, "k-trickle")
    took = time.monotonic() - started
    assert outcome.status == "retry" and "timeout" in (outcome.error or "")
    assert took < 1.5, took
    again = backend.send(MESSAGE, "k-trickle")  # the retry gets Courier's first answer, not a second send
    assert again.status == "sent" and standin.sends_by_key() == {"k-trickle": 1}


def test_a_trickling_courier_does_not_hold_the_delivery_threads(standin: CourierStandin) -> None:
    backend = CourierBackend(COURIER_TOKEN, standin.url, timeout=1.0)
    standin.trickle_next(8, 0.05)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:  # the worker's 4 delivery threads, 8 sends to make
        outcomes = list(pool.map(lambda i: backend.send(MESSAGE, f"k-{i}"), range(8)))
    took = time.monotonic() - started
    assert [o.status for o in outcomes] == ["retry"] * 8
    assert took < 2 * 1.0 + 1.0, took  # two rounds of one deadline each, not ~4 s per send
    assert backend.send(MESSAGE, "k-after").status == "sent"  # and delivery goes on


def test_a_send_past_its_deadline_is_rescheduled_as_a_retry(
    db_url: str, make_runtime: Any, standin: CourierStandin
) -> None:
    rt = make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=1.0), courier_timeout=1.0)
    now = utcnow()
    rt.emit(payment_succeeded("evt_pay", "pay_1", now), now=now)
    standin.trickle_next(1, 0.05)
    rt.sweep(now)
    [row] = rt.store.notifications(notification="client_payment_receipt", limit=10)
    assert row["status"] == "scheduled" and "timeout" in (row["last_error"] or "")


# -- the other routes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipient", ["u" * 201, "usr_%00"])
def test_preferences_of_an_impossible_recipient_are_a_422_on_both_stores(http: httpx.Client, recipient: str) -> None:
    for method in ("GET", "PUT"):
        r = http.request(method, f"/recipients/{recipient}/preferences", headers=AUTH,
                         json={"preferences": {"client_review_request": False}})
        assert r.status_code == 422, (method, r.text)


def test_a_preference_key_longer_than_its_column_is_a_422(http: httpx.Client) -> None:
    r = http.put("/recipients/usr_1/preferences", headers=AUTH,
                 json={"preferences": {"client_new_message:" + "e" * 300: False}})
    assert r.status_code == 422


def test_a_recipient_id_with_a_slash_reaches_its_preferences(http: httpx.Client, rt: Any) -> None:
    assert http.post("/events", json=confirmed(client="org/42"), headers=AUTH).status_code == 202
    r = http.put(
        "/recipients/org%2F42/preferences", headers=AUTH, json={"preferences": {"client_booking_reminder_24h": False}}
    )
    assert r.status_code == 200 and r.json()["recipient"] == "org/42"
    for spelling in ("org%2F42", "org/42", "org%2f42"):
        got = http.get(f"/recipients/{spelling}/preferences", headers=AUTH)
        assert got.json() == {"recipient": "org/42", "preferences": {"client_booking_reminder_24h": False}}, spelling


def test_upcoming_within_an_absurd_window_is_a_400(http: httpx.Client) -> None:
    r = http.get("/notifications/upcoming", params={"within": "1000000000d"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]


def test_a_query_parameter_with_a_nul_is_a_400(http: httpx.Client) -> None:
    r = http.get("/notifications", params={"recipient": "usr_\x00"}, headers=AUTH)
    assert r.status_code == 400


# -- signed requests ------------------------------------------------------------------------------------
def signed(body: bytes, t: int | None = None) -> dict[str, str]:
    return {"X-Engine-Signature": sign_ingest(SECRET, body, t or int(time.time())), "Content-Type": "application/json"}


def test_of_concurrent_copies_of_a_signed_request_one_is_stored_and_all_get_its_answer(
    http: httpx.Client, rt: Any
) -> None:
    body = json.dumps(confirmed()).encode()
    headers = signed(body)
    barrier = threading.Barrier(8)

    def post(_: int) -> httpx.Response:
        barrier.wait()
        return http.post("/events", content=body, headers=headers)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert [r.status_code for r in answers] == [202] * 8
    assert len({r.content for r in answers}) == 1 and answers[0].json()["duplicates"] == []
    assert sum("idempotent-replayed" not in r.headers for r in answers) == 1
    assert stored(rt) == (1, 6)


def test_a_signed_request_that_failed_may_be_retried_with_its_signature(http: httpx.Client, rt: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps(confirmed()).encode()
    headers = signed(body)
    real = rt.ingest_many
    monkeypatch.setattr(
        rt, "ingest_many", lambda *a, **k: (_ for _ in ()).throw(OperationalError("x", {}, Exception("down")))
    )
    assert http.post("/events", content=body, headers=headers).status_code == 503
    monkeypatch.setattr(rt, "ingest_many", real)
    accepted = http.post("/events", content=body, headers=headers)  # the failure spent nothing
    assert accepted.status_code == 202 and accepted.json()["accepted"]
    again = http.post("/events", content=body, headers=headers)  # the success did: its answer again
    assert (again.status_code, again.content, again.headers["idempotent-replayed"]) == (202, accepted.content, "true")


def test_a_value_the_store_refuses_is_a_422_not_a_503(
    http: httpx.Client, rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever slips past the door, a data error is permanent: a 503 would have the client retry for ever.
    monkeypatch.setattr(rt, "ingest_many", lambda *a, **k: (_ for _ in ()).throw(
        DataError("INSERT ...", {}, Exception("value too long for type character varying(500)\nDETAIL: ..."))))
    r = http.post("/events", json=confirmed(), headers=AUTH)
    assert r.status_code == 422
    assert r.json()["problems"] == [{"path": "$", "message": "value too long for type character varying(500)"}]
