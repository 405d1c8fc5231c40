"""Drive the real trycourier SDK against the Courier stand-in."""

from __future__ import annotations

import json
import time

import courier
import httpx
import pytest

from tests.support.courier_standin import CourierStandin

TOKEN = "tok"


def good_message(**overrides):
    msg = {
        "to": {"email": "ada@example.com"},
        "template": "welcome",
        "data": {"name": "Ada"},
        "routing": {"method": "single", "channels": ["email"]},
    }
    msg.update(overrides)
    return msg


@pytest.fixture
def standin():
    with CourierStandin(token=TOKEN) as s:
        yield s


@pytest.fixture
def client(standin):
    c = courier.Courier(api_key=TOKEN, base_url=standin.url, max_retries=0, timeout=2)
    yield c
    c.close()


def test_good_send_returns_request_id_and_is_recorded(standin, client):
    resp = client.send.message(message=good_message(), idempotency_key="k1")

    assert resp.request_id.startswith("1-")
    [rec] = standin.requests
    assert rec["request_id"] == resp.request_id
    assert rec["idempotency_key"] == "k1"
    assert rec["headers"]["idempotency-key"] == "k1"
    assert rec["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert rec["body"] == {"message": good_message()}
    assert isinstance(rec["at"], float)
    assert standin.sends_by_key() == {"k1": 1}


def test_replayed_key_returns_same_request_id_and_counts_once(standin, client):
    first = client.send.message(message=good_message(), idempotency_key="k1")
    second = client.send.message(message=good_message(), idempotency_key="k1")
    other = client.send.message(message=good_message(), idempotency_key="k2")

    assert second.request_id == first.request_id
    assert other.request_id != first.request_id
    assert standin.sends_by_key() == {"k1": 1, "k2": 1}
    assert len(standin.requests) == 2
    [replay] = standin.replays
    assert replay["idempotency_key"] == "k1"
    assert replay["status"] == 202 and replay["same_body"] is True


def test_wrong_token_raises_authentication_error(standin):
    bad = courier.Courier(api_key="nope", base_url=standin.url, max_retries=0, timeout=2)
    with pytest.raises(courier.AuthenticationError) as exc:
        bad.send.message(message=good_message(), idempotency_key="k1")
    assert exc.value.status_code == 401
    assert exc.value.body == {"message": "Unauthorized"}
    assert standin.requests == []
    # an unauthenticated call does not claim the key
    good = courier.Courier(api_key=TOKEN, base_url=standin.url, max_retries=0, timeout=2)
    good.send.message(message=good_message(), idempotency_key="k1")
    assert standin.sends_by_key() == {"k1": 1}


@pytest.mark.parametrize(
    "message, needle",
    [
        ({"template": "welcome"}, "message.to"),
        ({"to": {"name": "Ada"}, "template": "welcome"}, "email, user_id, phone_number"),
        ({"to": {"email": "a@x.io"}}, "message.template"),
        ({"to": {"email": "a@x.io"}, "template": ""}, "message.template"),
        ({"to": {"email": "a@x.io"}, "template": "t", "data": [1]}, "message.data"),
        ({"to": {"email": "a@x.io"}, "template": "t", "routing": {"method": "any", "channels": ["email"]}},
         "routing.method"),
        ({"to": {"email": "a@x.io"}, "template": "t", "routing": {"method": "all", "channels": "email"}},
         "routing.channels"),
        ({"to": {"email": "a@x.io"}, "template": "t", "tmplate": "x"}, "tmplate"),
        (good_message(metadata={"tags": ["x" * 31]}), "at most 30 characters"),
        (good_message(metadata={"tags": [f"t{i}" for i in range(10)]}), "at most 9 tags"),
        (good_message(metadata={"tags": "welcome"}), "metadata.tags"),
        (good_message(metadata={"trace_id": 7}), "metadata.trace_id"),
        (good_message(metadata={"notification": "welcome"}), "Unknown properties in message.metadata: notification"),
        (good_message(expiry={"expires_at": "2026-03-02T10:00:00Z"}), "message.expiry.expires_in"),
        (good_message(expiry={"expires_in": -5}), "message.expiry.expires_in"),
        (good_message(expiry={"expires_in": "1 hour"}), "message.expiry.expires_in"),
        (good_message(expiry={"expires_in": 60000, "expires_at": "2026-03-02T10:00:00"}), "message.expiry.expires_at"),
        (good_message(expiry={"expires_in": 60000, "deadline": 1}), "Unknown properties in message.expiry: deadline"),
    ],
)
def test_bad_body_raises_bad_request(standin, client, message, needle):
    with pytest.raises(courier.BadRequestError) as exc:
        client.send.message(message=message, idempotency_key="bad")
    assert exc.value.status_code == 400
    assert needle in exc.value.body["message"]
    assert standin.requests == []


def test_bad_request_is_replayed_for_same_key(standin, client):
    with pytest.raises(courier.BadRequestError):
        client.send.message(message={"template": "t"}, idempotency_key="k1")
    # Courier replays the first answer for a key, even an error one
    with pytest.raises(courier.BadRequestError):
        client.send.message(message=good_message(), idempotency_key="k1")
    assert standin.sends_by_key() == {}
    [replay] = standin.replays
    assert replay["status"] == 400 and replay["same_body"] is False


def test_malformed_json_and_unknown_path():
    with CourierStandin(token=TOKEN) as s:
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        r = httpx.post(s.url + "/send", content=b"{not json", headers=auth)
        assert r.status_code == 400 and "JSON" in r.json()["message"]
        r = httpx.post(s.url + "/messages", content=b"{}", headers=auth)
        assert r.status_code == 404 and "message" in r.json()
        r = httpx.get(s.url + "/send", headers=auth)
        assert r.status_code == 404
        assert s.requests == []


def test_rate_limit_then_success(standin, client):
    standin.fail_next(1, status=429, retry_after=3)
    with pytest.raises(courier.RateLimitError) as exc:
        client.send.message(message=good_message(), idempotency_key="k1")
    assert exc.value.response.headers["retry-after"] == "3"

    # injected failures are not stored for replay: the same key now succeeds
    resp = client.send.message(message=good_message(), idempotency_key="k1")
    assert resp.request_id
    assert standin.sends_by_key() == {"k1": 1}
    assert standin.replays == []
    assert [i["status"] for i in standin.injected] == [429]


def test_server_error_raises_internal_server_error(standin, client):
    standin.fail_next(1, status=500)
    with pytest.raises(courier.InternalServerError) as exc:
        client.send.message(message=good_message(), idempotency_key="k1")
    assert exc.value.status_code == 500
    assert standin.requests == []


def test_sdk_retries_through_injected_failures_with_same_key(standin):
    c = courier.Courier(api_key=TOKEN, base_url=standin.url, max_retries=2, timeout=2)
    standin.fail_next(2, status=503, retry_after=0.01)
    resp = c.send.message(message=good_message(), idempotency_key="k1")
    assert resp.request_id
    assert [i["idempotency_key"] for i in standin.injected] == ["k1", "k1"]
    assert standin.sends_by_key() == {"k1": 1}


def test_delay_beyond_timeout_raises_timeout_but_send_happened(standin, client):
    standin.delay_next(1, 1.0)
    t0 = time.monotonic()
    with pytest.raises(courier.APITimeoutError):
        client.send.message(message=good_message(), idempotency_key="k1", timeout=0.3)
    assert time.monotonic() - t0 < 1.0
    # the stand-in processed it before sleeping: a retry with the same key is a replay
    assert standin.sends_by_key() == {"k1": 1}
    again = client.send.message(message=good_message(), idempotency_key="k1")
    assert again.request_id == standin.requests[0]["request_id"]
    assert standin.sends_by_key() == {"k1": 1}


def test_dropped_connection_raises_connection_error(standin, client):
    standin.drop_next(1)
    with pytest.raises(courier.APIConnectionError) as exc:
        client.send.message(message=good_message(), idempotency_key="k1")
    assert not isinstance(exc.value, courier.APITimeoutError)
    assert standin.requests == []
    assert client.send.message(message=good_message(), idempotency_key="k1").request_id
    assert standin.sends_by_key() == {"k1": 1}


def test_latency_is_added(standin, client):
    standin.latency = 0.05
    t0 = time.monotonic()
    client.send.message(message=good_message(), idempotency_key="k1")
    assert time.monotonic() - t0 >= 0.05


def test_concurrent_same_key_counts_once(standin):
    import concurrent.futures as cf

    c = courier.Courier(api_key=TOKEN, base_url=standin.url, max_retries=0, timeout=2)
    with cf.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: c.send.message(message=good_message(), idempotency_key="same").request_id,
                            range(16)))
    assert len(set(ids)) == 1
    assert standin.sends_by_key() == {"same": 1}
    assert len(standin.replays) == 15
    json.dumps(standin.log)  # records are plain data


@pytest.mark.parametrize("expiry", [
    {"expires_in": 1_200_000, "expires_at": "2026-03-02T10:20:00Z"},
    {"expires_in": "PT20M"},
    {"expires_in": 0, "expires_at": 1772446800000},
    {"expires_in": "P1DT4H", "expires_at": "2026-03-02T10:20:00+01:00"},
])
def test_metadata_and_expiry_as_courier_takes_them(standin, client, expiry):
    metadata = {"event": "client_booking_reminder_30m", "tags": ["client_booking_reminder_30m", "category:reminders"],
                "trace_id": "client_booking_reminder_30m:bk_1:2026-03-02T11:00:00Z"}
    message = good_message(routing={"method": "all", "channels": ["email", "push"]}, metadata=metadata, expiry=expiry)
    client.send.message(message=message, idempotency_key="k1")
    [rec] = standin.requests
    assert rec["body"] == {"message": message}
