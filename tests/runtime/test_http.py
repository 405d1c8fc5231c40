"""The HTTP hook through a real server: uvicorn on 127.0.0.1 (ephemeral port), httpx as the client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from jsonschema import Draft202012Validator

from engine.clock import utcnow
from engine.http.app import build_app
from engine.signing import make_unsubscribe_token, sign_courier, sign_ingest

from .support import LiveServer, booking_confirmed, message_sent, metric_samples, payment_succeeded, sample, unbatched

INGEST_TOKEN = "ingest-token-123"
INGEST_SECRET = "ingest-secret-456"
WEBHOOK_SECRET = "webhook-secret-789"
SECRET_KEY = "unsubscribe-secret"
MAX_BODY = 64 * 1024
AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


@pytest.fixture
def rt(sqlite_url: str, make_runtime: Any) -> Any:
    return make_runtime(
        sqlite_url,
        ingest_token=INGEST_TOKEN,
        ingest_secret=INGEST_SECRET,
        webhook_secret=WEBHOOK_SECRET,
        secret_key=SECRET_KEY,
        max_body_bytes=MAX_BODY,
        public_url="https://engine.example.com",
    )


@pytest.fixture
def http(rt: Any) -> Iterator[httpx.Client]:
    with LiveServer(build_app(rt)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def event(eid: str = "evt_1", bid: str = "bk_1") -> dict[str, Any]:
    now = utcnow()
    return booking_confirmed(eid, bid, now + timedelta(days=3), now)


def stored(rt: Any) -> tuple[int, int]:
    return rt.store.event_count(), len(rt.store.notifications(limit=10_000))


# -- POST /events -----------------------------------------------------------------------------------
def test_a_single_event_is_accepted_and_durable(http: httpx.Client, rt: Any) -> None:
    r = http.post("/events", json=event(), headers=AUTH)
    assert r.status_code == 202
    assert r.json() == {"accepted": ["evt_1"], "duplicates": [], "scheduled": 6, "cancelled": 0}
    assert stored(rt) == (1, 6)  # committed before the answer


def test_concurrent_requests_each_get_the_answer_for_their_own_events(http: httpx.Client, rt: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(i: int) -> httpx.Response:
        body = {"events": [event(f"evt_c{i}", f"bk_c{i}"), event("evt_shared", "bk_shared")]}
        return http.post("/events", json=body, headers=AUTH)

    with ThreadPoolExecutor(16) as pool:
        answers = [r.json() for r in pool.map(post, range(32))]
    for i, answer in enumerate(answers):
        assert answer["accepted"][0] == f"evt_c{i}"
    shared = [a for a in answers if "evt_shared" in a["accepted"]]
    assert len(shared) == 1 and shared[0]["scheduled"] == 12
    assert all(a["duplicates"] == ["evt_shared"] and a["scheduled"] == 6 for a in answers if a not in shared)
    assert stored(rt) == (33, 33 * 6)


def test_a_batch_is_accepted_and_repeats_are_duplicates(http: httpx.Client, rt: Any) -> None:
    body = {"events": [event("evt_1", "bk_1"), event("evt_2", "bk_2"), event("evt_1", "bk_1")]}
    r = http.post("/events", json=body, headers=AUTH)
    assert r.status_code == 202
    assert (r.json()["accepted"], r.json()["duplicates"]) == (["evt_1", "evt_2"], ["evt_1"])
    before = stored(rt)
    assert before == (2, 12)
    again = http.post("/events", json=event("evt_2", "bk_2"), headers=AUTH)
    assert again.status_code == 202
    assert again.json() == {"accepted": [], "duplicates": ["evt_2"], "scheduled": 0, "cancelled": 0}
    assert stored(rt) == before


@pytest.mark.parametrize("body, needle", [
    (b'{"id": "evt_1", ', "not JSON"),
    (b"", "not JSON"),
    (b'\xff\xfe{"id": "x"}', "not UTF-8"),
])
def test_a_body_that_is_not_json_is_a_400(http: httpx.Client, rt: Any, body: bytes, needle: str) -> None:
    r = http.post("/events", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and needle in r.json()["error"]
    assert stored(rt) == (0, 0)


def test_credentials_are_required(http: httpx.Client, rt: Any) -> None:
    body = json.dumps(event()).encode()
    now = int(time.time())
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": INGEST_TOKEN},  # not a bearer
        {"X-Engine-Signature": sign_ingest("wrong-secret", body, now)},
        {"X-Engine-Signature": sign_ingest(INGEST_SECRET, body + b" ", now)},  # signs another body
        {"X-Engine-Signature": sign_ingest(INGEST_SECRET, body, now - 3600)},  # stale
        {"X-Engine-Signature": sign_ingest(INGEST_SECRET, body, now + 3600)},  # from the future
        {"X-Engine-Signature": "t=abc,v1=00"},
        {"X-Engine-Signature": "garbage"},
    ]
    for headers in refused:
        r = http.post("/events", content=body, headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 401, headers
        assert "error" in r.json()
    assert stored(rt) == (0, 0)
    good = http.post("/events", content=body, headers={"X-Engine-Signature": sign_ingest(INGEST_SECRET, body, now),
                                                       "Content-Type": "application/json"})
    assert good.status_code == 202 and good.json()["accepted"] == ["evt_1"]


def test_an_oversize_body_is_a_413(http: httpx.Client, rt: Any) -> None:
    big = event()
    big["data"]["padding"] = "x" * MAX_BODY
    r = http.post("/events", json=big, headers=AUTH)
    assert r.status_code == 413
    # Streamed without a Content-Length, it is cut off all the same.
    chunks = iter([json.dumps(big).encode()[i:i + 4096] for i in range(0, MAX_BODY + 8192, 4096)])
    r = http.post("/events", content=chunks, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert stored(rt) == (0, 0)


def test_a_schema_failure_is_a_422_with_json_paths_and_stores_nothing(http: httpx.Client, rt: Any) -> None:
    bad = event("evt_bad", "bk_bad")
    del bad["data"]["client"]["email"]
    bad["data"]["booking"]["start_time"] = "tomorrow"
    r = http.post("/events", json={"events": [event("evt_good"), bad]}, headers=AUTH)
    assert r.status_code == 422
    paths = {p["path"] for p in r.json()["problems"]}
    assert {"$.events[1].data.client", "$.events[1].data.booking.start_time"} <= paths, r.json()
    assert all(p["path"].startswith("$.events[1]") for p in r.json()["problems"])
    assert stored(rt) == (0, 0)  # the good event of the batch was refused with it


def test_an_unknown_type_is_a_422(http: httpx.Client, rt: Any) -> None:
    r = http.post("/events", json={**event(), "type": "booking.exploded"}, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["problems"] == [{"path": "$.type", "message": "unknown event type 'booking.exploded'"}]
    for body in ({"events": []}, {"events": "nope"}, [1, 2], "text", {**event(), "extra": 1}):
        r = http.post("/events", json=body, headers=AUTH)
        assert r.status_code == 422 and r.json()["problems"], body
    assert stored(rt) == (0, 0)


# -- the documents ----------------------------------------------------------------------------------
def test_openapi_lists_every_event_type_and_its_refs_resolve(http: httpx.Client, rt: Any) -> None:
    r = http.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"]
    assert {"/events", "/webhooks/courier", "/healthz"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    named = [ref["$ref"].split("/")[-1] for ref in schemas["Event"]["oneOf"]]
    assert {schemas[name]["properties"]["type"]["const"] for name in named} == set(rt.config.events)

    def refs(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from ([v] if k == "$ref" else refs(v))
        elif isinstance(value, list):
            for v in value:
                yield from refs(v)

    for ref in set(refs(doc)):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref
    # The request schema accepts every rule's example envelope and refuses a broken one.
    body = {
        **doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        "components": doc["components"],
    }
    check = Draft202012Validator(body)
    examples = [
        {"id": n.example.id, "type": n.example.type, "occurred_at": n.example.occurred_at, "data": n.example.data}
        for n in rt.config.notifications.values() if n.example
    ]
    assert examples and all(check.is_valid(e) for e in examples)
    assert check.is_valid({"events": examples})
    assert not check.is_valid({**examples[0], "type": "nope"})


def test_healthz_and_metrics(http: httpx.Client) -> None:
    r = http.get("/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
    before = metric_samples(http.get("/metrics").text)  # the counters are the process's: other tests counted too
    http.post("/events", json=event(), headers=AUTH)
    http.post("/events", json=event(), headers=AUTH)
    http.post("/events", json={}, headers={})
    after = metric_samples(http.get("/metrics").text)

    def more(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert more("engine_events_total", outcome="accepted") == 1
    assert more("engine_events_total", outcome="duplicate") == 1
    assert more("engine_http_requests_total", route="events", status="202") == 2
    assert more("engine_http_requests_total", route="events", status="401") == 1
    # the store's figures are read at most every ENGINE_METRICS_REFRESH seconds: fresh at the first scrape
    assert sample(before, "engine_notifications", status="scheduled") == 0


# -- Courier's webhooks -------------------------------------------------------------------------------
def sent_row(rt: Any) -> dict[str, Any]:
    now = utcnow()
    rt.emit(payment_succeeded("evt_pay", "pay_1", now), now=now)
    rt.sweep(now)
    [row] = rt.store.notifications(notification="client_payment_receipt")
    assert row["status"] == "sent" and row["request_id"]
    return row


def webhook(
    http: httpx.Client, body: dict[str, Any], secret: str = WEBHOOK_SECRET, t_ms: int | None = None
) -> httpx.Response:
    raw = json.dumps(body).encode()
    stamp = int(time.time() * 1000) if t_ms is None else t_ms
    return http.post("/webhooks/courier", content=raw, headers={"courier-signature": sign_courier(secret, raw, stamp),
                                                                "Content-Type": "application/json"})


def test_courier_webhooks_update_the_delivery_status(http: httpx.Client, rt: Any) -> None:
    row = sent_row(rt)
    status = lambda: rt.store.notifications(notification="client_payment_receipt")[0]["delivery_status"]  # noqa: E731
    body = {"type": "message:updated", "data": {"id": row["request_id"], "status": "DELIVERED"}}
    r = webhook(http, body)
    assert r.status_code == 200 and r.json() == {"result": "applied"}
    assert status() == "delivered"
    assert webhook(http, body).json() == {"result": "duplicate"}
    opened = {"type": "message:updated", "data": {"id": row["request_id"], "status": "OPENED"}}
    assert webhook(http, opened).json() == {"result": "applied"}
    assert status() == "opened"
    for refused in (
        webhook(http, opened, secret="wrong"),
        webhook(http, opened, t_ms=int((time.time() - 3600) * 1000)),
    ):
        assert refused.status_code == 401
    raw = json.dumps(body).encode()
    assert http.post("/webhooks/courier", content=raw).status_code == 401  # no signature at all
    assert (
        webhook(http, {"type": "message:updated", "data": {"id": row["request_id"], "status": "SENT"}}).json()[
            "ignored"
        ]
        is True
    )
    assert webhook(http, {"type": "other:event"}).json() == {"ignored": True}
    assert status() == "opened"


def test_out_of_order_webhooks_keep_the_furthest_status(http: httpx.Client, rt: Any) -> None:
    row = sent_row(rt)
    for s in ("OPENED", "DELIVERED"):
        webhook(http, {"type": "message:updated", "data": {"id": row["request_id"], "status": s}})
    assert rt.store.notifications(notification="client_payment_receipt")[0]["delivery_status"] == "opened"


def test_a_webhook_that_overtakes_its_send_is_kept_and_applied_when_the_send_is_recorded(
    http: httpx.Client, rt: Any
) -> None:
    rt.emit(booking_confirmed("evt_early", "bk_early", utcnow() + timedelta(days=30), utcnow()), now=utcnow())
    [row] = rt.store.notifications(notification="client_booking_confirmation")
    claimed = rt.store.claim(rt.store.queue_due(utcnow(), ids=[row["id"]])[0], utcnow())
    early = {"type": "message:updated", "data": {"id": "1-early", "status": "DELIVERED"}}
    r = webhook(http, early)
    assert r.status_code == 202 and r.json()["result"] == "pending"  # Courier does not retry a 4xx: keep it
    time.sleep(0.002)  # a retry is signed anew
    assert webhook(http, early).json()["result"] == "pending"
    assert rt.store.finish(claimed, "sent", utcnow(), request_id="1-early") == "sent"
    assert rt.store.notifications(notification="client_booking_confirmation")[0]["delivery_status"] == "delivered"
    time.sleep(0.002)
    assert webhook(http, early).json() == {"result": "duplicate"}


# -- unsubscribe ----------------------------------------------------------------------------------------
def test_unsubscribe_link_from_a_rendered_message_works_one_click(http: httpx.Client, rt: Any) -> None:
    now = utcnow()
    unbatched(rt).emit(message_sent("evt_m", "msg_1", "conv_1", now), now=now)
    [row] = rt.store.notifications(notification="client_new_message", with_payload=True)
    link = urlparse(row["message"]["data"]["unsubscribe_url"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == "https://engine.example.com/unsubscribe"
    token = parse_qs(link.query)["token"][0]
    page = http.get("/unsubscribe", params={"token": token})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<form method=post" in page.text and "List-Unsubscribe" in page.text
    assert rt.store.preferences("usr_c_1") == {}  # a GET changes nothing (mail scanners follow links)
    r = http.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert rt.store.preferences("usr_c_1") == {"client_new_message": False}


def test_a_category_unsubscribe_link_turns_off_the_category(http: httpx.Client, rt: Any) -> None:
    token = make_unsubscribe_token(SECRET_KEY, "usr_c_1", "category:activity", utcnow())
    assert http.get("/unsubscribe", params={"token": token}).status_code == 200
    assert http.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert rt.store.preferences("usr_c_1") == {"activity": False}
    now = utcnow()
    unbatched(rt).emit(message_sent("evt_m", "msg_1", "conv_1", now), now=now)
    rt.sweep(now)
    assert [(r["status"], r["reason"]) for r in rt.store.notifications(notification="client_new_message")] == [
        ("skipped", "opted_out")
    ]


def test_forged_or_expired_unsubscribe_tokens_are_refused(http: httpx.Client, rt: Any) -> None:
    now = utcnow()
    good = make_unsubscribe_token(SECRET_KEY, "usr_c_1", "client_new_message", now)
    body, sig = good.split(".")
    forged_body = make_unsubscribe_token(SECRET_KEY, "usr_other", "client_new_message", now).split(".")[0]
    bad_tokens = [
        f"{forged_body}.{sig}",  # someone else's recipient under this signature
        make_unsubscribe_token("another-secret", "usr_c_1", "client_new_message", now),
        make_unsubscribe_token(SECRET_KEY, "usr_c_1", "client_new_message", now - timedelta(days=366)),  # expired
        "", "garbage", f"{body}.",
    ]
    for token in bad_tokens:
        assert http.get("/unsubscribe", params={"token": token}).status_code == 400, token
        r = http.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 400, token
    assert rt.store.preferences("usr_c_1") == {} and rt.store.preferences("usr_other") == {}


# -- preferences and reads ------------------------------------------------------------------------------
def test_preferences_require_the_bearer_token(http: httpx.Client, rt: Any) -> None:
    url = "/recipients/usr_c_1/preferences"
    assert http.get(url).status_code == 401
    assert http.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.put(url, json={"preferences": {"client_new_message": False}}).status_code == 401
    assert rt.store.preferences("usr_c_1") == {}
    assert http.get(url, headers=AUTH).json() == {"recipient": "usr_c_1", "preferences": {}}
    r = http.put(
        url,
        json={"preferences": {"client_new_message": False, "marketing": False, "client_welcome:email": True}},
        headers=AUTH,
    )
    assert r.status_code == 200
    assert r.json()["preferences"] == {"client_new_message": False, "marketing": False, "client_welcome:email": True}
    r = http.put(url, json={"preferences": {"marketing": None}}, headers=AUTH)
    assert r.json()["preferences"] == {"client_new_message": False, "client_welcome:email": True}
    for body in (
        {"preferences": {"no_such_thing": False}},
        {"preferences": {"client_new_message": "off"}},
        {"prefs": {}},
        [1],
    ):
        r = http.put(url, json=body, headers=AUTH)
        assert r.status_code == 422, body
    assert http.put(url, content=b"{", headers=AUTH).status_code == 400
    assert http.get(url, headers=AUTH).json()["preferences"] == {
        "client_new_message": False,
        "client_welcome:email": True,
    }


def test_notifications_and_upcoming(http: httpx.Client, rt: Any) -> None:
    now = utcnow()
    rt.emit(booking_confirmed("evt_1", "bk_1", now + timedelta(hours=20), now), now=now)
    rt.sweep(now)
    for url in ("/notifications", "/notifications/upcoming"):
        assert http.get(url).status_code == 401
    listed = http.get("/notifications", headers=AUTH).json()["notifications"]
    assert {(n["notification"], n["status"]) for n in listed} == {
        ("client_booking_confirmation", "sent"), ("practitioner_booking_notification", "sent"),
        ("client_booking_reminder_24h", "skipped"), ("practitioner_session_reminder_24h", "skipped"),
        ("client_booking_reminder_30m", "scheduled"), ("practitioner_session_reminder_30m", "scheduled")}
    assert all(n["send_at"].endswith("Z") for n in listed)
    sent = http.get("/notifications", params={"status": "sent"}, headers=AUTH).json()["notifications"]
    assert len(sent) == 2
    assert len(http.get("/notifications", params={"limit": "3"}, headers=AUTH).json()["notifications"]) == 3
    for limit in ("-1", "0", "many"):  # a negative LIMIT would mean "no limit" on SQLite and an error on PostgreSQL
        assert http.get("/notifications", params={"limit": limit}, headers=AUTH).status_code == 400, limit
    upcoming = http.get("/notifications/upcoming", params={"within": "24h"}, headers=AUTH).json()["upcoming"]
    assert sorted(u["notification"] for u in upcoming) == [
        "client_booking_reminder_30m",
        "practitioner_session_reminder_30m",
    ]
    assert upcoming[0]["message"]["message"]["data"]["booking_id"] == "bk_1"
    assert upcoming[0]["data"]["booking_id"] == "bk_1" and upcoming[0]["will_skip"] is None
    assert http.get("/notifications/upcoming", params={"within": "1h"}, headers=AUTH).json()["upcoming"] == []
    assert http.get("/notifications/upcoming", params={"within": "soon"}, headers=AUTH).status_code == 400
    rt.emit(payment_succeeded("evt_2", "pay_1", now), now=now)  # a digest starts collecting
    week = http.get("/notifications/upcoming", params={"within": "8d"}, headers=AUTH).json()["upcoming"]
    digest = next(u for u in week if u["notification"] == "practitioner_weekly_earnings_summary")
    assert (digest["status"], digest["digest_items"], digest["id"]) == ("collecting", 1, None)


@pytest.mark.parametrize("broken", ["sqlite-directory", "postgres-closed-port"])
def test_a_store_that_cannot_be_reached_is_a_503(rt: Any, tmp_path: Any, broken: str) -> None:
    # The hook answers 503 (try again; nothing was accepted), never a 500, whichever database
    # is down: the hot paths' own driver errors are raised as the store's other errors are.
    from engine.store.db import connect
    from engine.store.repository import Store

    url = (f"sqlite:///{tmp_path}" if broken == "sqlite-directory"  # a directory where the file should be
           else "postgresql+psycopg://postgres@127.0.0.1:1/test")
    rt.store = Store(connect(url))
    with LiveServer(build_app(rt)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/events", json=event(), headers=AUTH)
    assert r.status_code == 503, r.text
    assert "unavailable" in r.json()["error"]
