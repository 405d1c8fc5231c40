"""What senders already produce, through a real server (uvicorn on loopback, httpx as the client):

* Standard Webhooks signatures, made by the `standardwebhooks` library's own signer; a retry keeps
  its `webhook-id` and gets the first answer; another body under the same id is a 401;
* copies of one signed request at the same moment: one is stored, every copy gets its answer;
* CloudEvents 1.0 JSON, structured and batch, mapped to the envelope, with the door's limits and
  problems at the paths of the sender's body.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from engine.clock import utcnow
from engine.signing import sign_ingest

from .support import LiveServer, booking_confirmed, payment_succeeded

KEY = b"standard-webhooks-key-0123456789"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
TOKEN = "formats-token"
TOLERANCE = 300
CE = {"Content-Type": "application/cloudevents+json"}
CE_BATCH = {"Content-Type": "application/cloudevents-batch+json"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def rt(db_url: str, make_runtime: Any) -> Any:
    return make_runtime(db_url, ingest_token=TOKEN, ingest_secret=SECRET, signature_tolerance_s=TOLERANCE)


@pytest.fixture
def http(rt: Any) -> Iterator[httpx.Client]:
    from engine.http.app import build_app

    with LiveServer(build_app(rt)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def event(eid: str = "evt_sw_1", bid: str = "bk_sw_1") -> dict[str, Any]:
    now = utcnow()
    return booking_confirmed(eid, bid, now + timedelta(days=3), now)


def webhook_headers(
    body: bytes, msg_id: str = "msg_1", when: datetime | None = None, secret: str = SECRET
) -> dict[str, str]:
    when = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature}


def stored(rt: Any) -> tuple[int, int]:
    return rt.store.event_count(), len(rt.store.notifications(limit=10_000))


# -- Standard Webhooks ------------------------------------------------------------------------------------
def test_a_standard_webhooks_signed_request_is_accepted(http: httpx.Client, rt: Any) -> None:
    body = json.dumps(event()).encode()
    r = http.post("/events", content=body, headers=webhook_headers(body))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": ["evt_sw_1"], "duplicates": [], "scheduled": 6, "cancelled": 0}
    # The library's verifier agrees with what was sent (the signature is the specification's).
    Webhook(SECRET).verify(body, webhook_headers(body))


def test_a_secret_rotation_header_with_several_signatures_is_accepted_when_one_matches(http: httpx.Client) -> None:
    body = json.dumps(event()).encode()
    headers = webhook_headers(body)
    other = Webhook("whsec_" + base64.b64encode(b"an older key").decode()).sign(
        "msg_1", datetime.now(UTC), body.decode()
    )
    headers["webhook-signature"] = f"v1a,AAAA {other} {headers['webhook-signature']}"
    assert http.post("/events", content=body, headers=headers).status_code == 202


@pytest.mark.parametrize(
    "case",
    [
        "wrong key",
        "stale",
        "future",
        "no id",
        "no timestamp",
        "no signature",
        "body changed",
        "id changed",
        "timestamp changed",
        "not v1",
        "garbage",
        "timestamp not a number",
    ],
)
def test_bad_standard_webhooks_signatures_are_a_401_and_store_nothing(http: httpx.Client, rt: Any, case: str) -> None:
    body = json.dumps(event()).encode()
    good = webhook_headers(body)
    now = datetime.now(UTC)
    headers = {
        "wrong key": webhook_headers(body, secret="whsec_" + base64.b64encode(b"another key").decode()),
        "stale": webhook_headers(body, when=now - timedelta(seconds=TOLERANCE + 5)),
        "future": webhook_headers(body, when=now + timedelta(seconds=TOLERANCE + 5)),
        "no id": {k: v for k, v in good.items() if k != "webhook-id"},
        "no timestamp": {k: v for k, v in good.items() if k != "webhook-timestamp"},
        "no signature": {k: v for k, v in good.items() if k != "webhook-signature"},
        "body changed": good,
        "id changed": {**good, "webhook-id": "msg_2"},
        "timestamp changed": {**good, "webhook-timestamp": str(int(good["webhook-timestamp"]) - 1)},
        "not v1": {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")},
        "garbage": {**good, "webhook-signature": "v1,not-base64!!"},
        "timestamp not a number": {**good, "webhook-timestamp": "1e9"},
    }[case]
    sent = body.replace(b"evt_sw_1", b"evt_sw_9") if case == "body changed" else body
    r = http.post("/events", content=sent, headers=headers)
    assert r.status_code == 401 and r.json()["error"], (case, r.text)
    assert stored(rt) == (0, 0)


def test_a_standard_webhooks_retry_gets_the_first_answer_and_another_body_under_its_id_a_401(
    http: httpx.Client, rt: Any
) -> None:
    body = json.dumps(event()).encode()
    first = http.post("/events", content=body, headers=webhook_headers(body, "msg_retry"))
    assert first.status_code == 202 and first.json()["accepted"] == ["evt_sw_1"]
    counts = stored(rt)
    # The sender's retry: the same id and body, signed anew a few seconds later.
    retry = http.post(
        "/events", content=body, headers=webhook_headers(body, "msg_retry", datetime.now(UTC) + timedelta(seconds=3))
    )
    assert (retry.status_code, retry.content) == (202, first.content)
    assert retry.headers["idempotent-replayed"] == "true"
    # A validly signed different body under the same id is not that request.
    other = json.dumps(event("evt_sw_2", "bk_sw_2")).encode()
    refused = http.post("/events", content=other, headers=webhook_headers(other, "msg_retry"))
    assert refused.status_code == 401 and "another request" in refused.json()["error"]
    assert stored(rt) == counts
    # A new id is a new request: its events are deduplicated on their ids as always.
    again = http.post("/events", content=body, headers=webhook_headers(body, "msg_new"))
    assert again.json() == {**first.json(), "accepted": [], "duplicates": ["evt_sw_1"], "scheduled": 0}


def test_a_request_that_failed_releases_its_id(http: httpx.Client, rt: Any) -> None:
    bad = json.dumps({**event(), "type": "booking.exploded"}).encode()
    assert http.post("/events", content=bad, headers=webhook_headers(bad, "msg_fix")).status_code == 422
    body = json.dumps(event()).encode()  # the sender fixes its event and retries under the same id
    assert http.post("/events", content=body, headers=webhook_headers(body, "msg_fix")).status_code == 202


@pytest.mark.parametrize("scheme", ["x-engine-signature", "standard webhooks"])
def test_identical_signed_requests_at_once_store_once_and_all_get_the_first_answer(
    http: httpx.Client, rt: Any, scheme: str
) -> None:
    events = [payment_succeeded(f"evt_burst_{i}", f"pay_{i}", utcnow()) for i in range(200)]
    body = json.dumps({"events": events}).encode()
    headers = (
        webhook_headers(body, "msg_burst")
        if scheme == "standard webhooks"
        else {"Content-Type": "application/json", "X-Engine-Signature": sign_ingest(SECRET, body, int(time.time()))}
    )
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: http.post("/events", content=body, headers=headers), range(8)))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.content for r in answers}) == 1
    assert sorted(answers[0].json()["accepted"]) == sorted(e["id"] for e in events)
    assert sum("idempotent-replayed" not in r.headers for r in answers) == 1  # exactly one was stored
    assert stored(rt)[0] == 200


def test_the_bearer_needs_no_signature_and_skips_replay_tracking(http: httpx.Client) -> None:
    body = json.dumps(event()).encode()
    first = http.post("/events", content=body, headers={"Content-Type": "application/json", **BEARER})
    second = http.post("/events", content=body, headers={"Content-Type": "application/json", **BEARER})
    assert first.json()["accepted"] == ["evt_sw_1"] and second.json()["duplicates"] == ["evt_sw_1"]


# -- CloudEvents ------------------------------------------------------------------------------------------
def cloudevent(native: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": native["id"], "type": native["type"], "source": "https://estuary.app/bookings",
            "time": native["occurred_at"], "datacontenttype": "application/json", "data": native["data"], **extra}


def test_a_structured_cloudevent_is_stored_as_its_envelope(http: httpx.Client, rt: Any) -> None:
    native = event("evt_ce_1")
    r = http.post("/events", json=cloudevent(native, subject="bk_sw_1", traceparent="00-abc-def-01"),
                  headers={**BEARER, "Content-Type": "application/cloudevents+json; charset=utf-8"})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": ["evt_ce_1"], "duplicates": [], "scheduled": 6, "cancelled": 0}
    # The same event in the native envelope is the same event: a duplicate.
    again = http.post("/events", json=native, headers=BEARER)
    assert again.json()["duplicates"] == ["evt_ce_1"]


def test_a_cloudevents_batch_is_accepted_and_answered_like_a_native_batch(http: httpx.Client, rt: Any) -> None:
    batch = [cloudevent(event(f"evt_ceb_{i}", f"bk_ceb_{i}")) for i in range(3)]
    r = http.post("/events", content=json.dumps(batch), headers={**BEARER, **CE_BATCH})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == ["evt_ceb_0", "evt_ceb_1", "evt_ceb_2"] and stored(rt)[0] == 3


def test_a_standard_webhooks_signed_cloudevent_is_accepted(http: httpx.Client) -> None:
    body = json.dumps(cloudevent(event("evt_ce_sw"))).encode()
    r = http.post("/events", content=body, headers={**webhook_headers(body, "msg_ce"), **CE})
    assert r.status_code == 202 and r.json()["accepted"] == ["evt_ce_sw"]


def test_cloudevents_problems_are_reported_at_the_paths_of_the_body(http: httpx.Client, rt: Any) -> None:
    good = cloudevent(event("evt_ce_bad"))
    broken = {**good, "time": "yesterday", "specversion": "0.3", "data": {**good["data"], "booking": {"id": "bk"}}}
    del broken["source"]
    r = http.post("/events", json=broken, headers={**BEARER, **CE})
    assert r.status_code == 422
    paths = {p["path"] for p in r.json()["problems"]}
    assert {"$", "$.specversion", "$.time", "$.data.booking"} <= paths, r.json()
    assert not any("occurred_at" in p["path"] or "occurred_at" in p["message"] for p in r.json()["problems"]), r.json()
    assert {"path": "$", "message": "'source' is a required property"} in r.json()["problems"]

    no_time = {k: v for k, v in good.items() if k != "time"}
    r = http.post("/events", json=no_time, headers={**BEARER, **CE})
    assert r.json()["problems"] == [{"path": "$", "message": "'time' is a required property"}]

    batch = [
        good,
        {**good, "id": "evt_ce_2", "type": "booking.exploded"},
        {**good, "data_base64": "AAAA", "id": "evt_ce_3"},
    ]
    r = http.post("/events", json=batch, headers={**BEARER, **CE_BATCH})
    assert r.status_code == 422
    assert {p["path"] for p in r.json()["problems"]} == {"$[1].type", "$[2].data_base64"}, r.json()
    r = http.post("/events", json=[{**good, "time": 5}], headers={**BEARER, **CE_BATCH})
    assert [p["path"] for p in r.json()["problems"]] == ["$[0].time"]
    r = http.post(
        "/events",
        json={**good, "Bad_Name": 1, "ext": {"a": 1}, "datacontenttype": "text/xml"},
        headers={**BEARER, **CE},
    )
    assert {p["path"] for p in r.json()["problems"]} == {"$.Bad_Name", "$.ext", "$.datacontenttype"}, r.json()
    assert stored(rt) == (0, 0)


def test_cloudevents_batches_keep_the_door_limits(http: httpx.Client, rt: Any) -> None:
    good = cloudevent(event())
    for body in ([], {}, good, "x"):
        r = http.post("/events", json=body, headers={**BEARER, **CE_BATCH})
        assert r.status_code == 422 and r.json()["problems"] == [
            {"path": "$", "message": "must be a non-empty array"}
        ], body
    r = http.post("/events", json=[{**good, "id": f"e{i}"} for i in range(1001)], headers={**BEARER, **CE_BATCH})
    assert r.status_code == 413
    r = http.post("/events", json=[good, 1], headers={**BEARER, **CE_BATCH})
    assert r.json()["problems"] == [{"path": "$[1]", "message": "an event must be a JSON object"}]
    r = http.post("/events", content=b"[{", headers={**BEARER, **CE_BATCH})
    assert r.status_code == 400
    assert stored(rt) == (0, 0)
