"""The client against a real `engine serve`: every way to sign, retries, typed refusals."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from engine_client import (
    AsyncClient,
    Client,
    EngineUnavailable,
    EventRefused,
    Retry,
    Unauthorized,
    new_event_id,
    sign_ingest,
)
from engine_client.ids import ulid
from engine_client.retry import parse_retry_after
from engine_client.signing import Hmac, StandardWebhooks

from tests.client.conftest import SECRET, TOKEN, Hook, profile_completed
from tests.support.engine_process import free_port

FAST = Retry(attempts=4, backoff=0.01, max_backoff=0.05)


def test_emit_with_a_token_stores_the_event_under_a_new_sortable_id(hook: Hook) -> None:
    with Client(hook.url, token=TOKEN, retry=FAST) as client:
        receipt = client.emit(profile_completed("token"))
        again = client.emit(profile_completed("token", id=receipt.ids[0]))
    (event_id,) = receipt.ids
    assert event_id.startswith("evt_") and len(event_id) == 30
    assert receipt.accepted == (event_id,) and receipt.duplicates == ()
    assert again.accepted == () and again.duplicates == (event_id,)
    assert event_id in hook.stored()


def test_emit_many_posts_one_batch_in_order(hook: Hook) -> None:
    events = [profile_completed(f"batch{i}") for i in range(30)]
    with Client(hook.url, secret=SECRET, retry=FAST) as client:
        receipt = client.emit_many(events)
    assert list(receipt.ids) == sorted(receipt.ids)  # made in order, sorting in order
    assert receipt.accepted == receipt.ids
    assert set(receipt.ids) <= set(hook.stored())


def test_the_hmac_signature_is_the_engines_own() -> None:
    from engine.signing import sign_ingest as engine_sign
    from engine.signing import verify_ingest

    now = datetime.now(UTC)
    for body in (b"", b'{"a":1}', "{\"name\":\"José ☃\"}".encode(), bytes(range(256))):
        t = int(now.timestamp())
        assert sign_ingest("s3cret", body, t) == engine_sign("s3cret", body, t)
        header = Hmac("s3cret").headers(body, "msg_x", t)["X-Engine-Signature"]
        assert verify_ingest("s3cret", header, body, now, 300) == t


class LoseFirstAnswer(httpx.HTTPTransport):
    """Delivers every request, but the first answer never reaches the client (a read timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = super().handle_request(request)
        if len(self.requests) == 1:
            response.read()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@pytest.mark.parametrize("auth", ["token", "secret", "webhook_secret"])
def test_a_retry_after_a_lost_answer_is_answered_not_refused(hook: Hook, auth: str) -> None:
    transport = LoseFirstAnswer()
    credentials = {"token": TOKEN} if auth == "token" else {auth: SECRET}
    frozen = time.time()  # both attempts in the same second: the retry must still be signed anew
    with Client(hook.url, **credentials, retry=FAST, transport=transport, clock=lambda: frozen) as client:
        receipt = client.emit(profile_completed(f"lost-{auth}"))
    first, second = transport.requests
    assert first.content == second.content  # the same event id again
    assert hook.stored().count(receipt.ids[0]) == 1
    if auth == "webhook_secret":  # the same webhook-id: the engine replays its first answer
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert receipt.accepted == receipt.ids and receipt.duplicates == ()
    else:  # a new request, whose event the engine has already
        assert receipt.duplicates == receipt.ids and receipt.accepted == ()
    if auth == "secret":
        assert first.headers["x-engine-signature"] != second.headers["x-engine-signature"]


def test_a_refused_event_raises_with_the_json_paths_and_is_not_retried(hook: Hook) -> None:
    sleeps: list[float] = []
    bad = {
        "type": "practitioner.profile_completed",
        "data": {"practitioner": {"id": "p", "email": "not-an-address", "name": "P", "timezone": "Europe/Berlin"}},
    }
    with (
        Client(hook.url, token=TOKEN, retry=FAST, sleep=sleeps.append) as client,
        pytest.raises(EventRefused) as refused,
    ):
        client.emit_many([profile_completed("fine"), bad])
    assert refused.value.status == 422
    assert [p.path for p in refused.value.problems] == ["$.events[1].data.practitioner.email"]
    assert "$.events[1].data.practitioner.email" in str(refused.value)
    assert sleeps == []


def test_wrong_credentials_raise_unauthorized(hook: Hook) -> None:
    with (
        Client(hook.url, token="wrong", retry=FAST) as client,
        pytest.raises(Unauthorized, match="401: missing or invalid credentials"),
    ):
        client.emit(profile_completed("nobody"))


def test_an_engine_that_is_down_is_retried_with_full_jitter_then_reported() -> None:
    sleeps: list[float] = []
    retry = Retry(attempts=4, backoff=0.1, max_backoff=0.3)
    client = Client(f"http://127.0.0.1:{free_port()}", token=TOKEN, retry=retry, sleep=sleeps.append)
    started = time.monotonic()
    with client, pytest.raises(EngineUnavailable) as down:
        client.emit(profile_completed("down"))
    assert down.value.attempts == 4 and "ConnectError" in down.value.last
    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, (0.1, 0.2, 0.3), strict=True))
    assert time.monotonic() - started < 2


def test_backoff_doubles_to_its_cap_and_retry_after_is_a_floor() -> None:
    top, bottom = Retry(backoff=0.5, max_backoff=4, jitter=lambda: 1.0), Retry(backoff=0.5, jitter=lambda: 0.0)
    assert [top.wait(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert bottom.wait(3) == 0.0
    assert bottom.wait(0, retry_after=3) == 3 and top.wait(0, retry_after=0.1) == 0.5
    assert Retry(max_retry_after=10, jitter=lambda: 0.0).wait(0, retry_after=3600) == 10
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)) == 30


def test_429_and_503_are_retried_honouring_retry_after_with_the_same_body() -> None:
    answers = [httpx.Response(503, headers={"Retry-After": "5"}, json={"error": "the store is unavailable"}),
               httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"})]
    bodies: list[bytes] = []

    def engine(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return answers.pop(0) if answers else httpx.Response(202, json={"accepted": ["e"], "duplicates": [],
                                                                             "scheduled": 0, "cancelled": 0})

    sleeps: list[float] = []
    client = Client("http://engine.test", token=TOKEN, retry=Retry(backoff=0.01, jitter=lambda: 0.5),
                    transport=httpx.MockTransport(engine), sleep=sleeps.append)
    assert client.emit(profile_completed("busy")).accepted == ("e",)
    assert sleeps == [5, 2] and len(set(bodies)) == 1 and len(bodies) == 3


def test_bad_input_is_refused_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []
    client = Client(
        "http://engine.test", transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(202))
    )
    naive = profile_completed("x", data={"practitioner": {}, "at": datetime(2026, 1, 1)})
    with pytest.raises(TypeError, match="needs a time zone"):
        client.emit(naive)
    with pytest.raises(TypeError, match="minor units"):
        client.emit(profile_completed("x", data={"amount": Decimal("1.50")}))
    with pytest.raises(ValueError, match="needs a `type`"):
        client.emit({"data": {}})
    with pytest.raises(ValueError, match="at most 1000"):
        client.emit_many([profile_completed(i) for i in range(1001)])
    with pytest.raises(ValueError, match="at least one"):
        client.emit_many([])
    with pytest.raises(ValueError, match="one of token, secret"):
        Client("http://engine.test", token="a", secret="b")
    with pytest.raises(ValueError, match="http:// or https://"):
        Client("engine.test")
    assert sent == []


def test_ids_sort_in_the_order_they_were_made() -> None:
    made = [new_event_id() for _ in range(2000)]
    assert made == sorted(made) and len(set(made)) == 2000
    assert ulid(now_ms=0)[:10] == ulid(now_ms=0)[:10]  # a clock stepping back keeps counting up
    early, late = ulid(now_ms=5_000_000_000_000), ulid(now_ms=5_000_000_000_001)
    assert early < late and early[:10] != late[:10]


def test_standard_webhooks_headers_pass_the_reference_verifier() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"a key of thirty-two bytes, long!").decode()
    body = '{"type":"practitioner.profile_completed","data":{"name":"José"}}'.encode()
    headers = StandardWebhooks(secret).headers(body, "msg_1", int(time.time()))
    assert Webhook(secret).verify(body, headers) == {"type": "practitioner.profile_completed", "data": {"name": "José"}}
    tampered = {**headers, "webhook-id": "msg_2"}
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(body, tampered)
    with pytest.raises(ValueError, match="followed by base64"):
        StandardWebhooks("whsec_not base64!")


def test_the_engine_accepts_standard_webhooks_signatures_and_refuses_a_wrong_key(hook: Hook) -> None:
    with Client(hook.url, webhook_secret=SECRET, retry=FAST) as client:
        receipt = client.emit(profile_completed("webhook"))
    assert receipt.accepted == receipt.ids and receipt.ids[0] in hook.stored()
    wrong = "whsec_" + base64.b64encode(SECRET.encode()[::-1]).decode()
    with (
        Client(hook.url, webhook_secret=wrong, retry=FAST) as client,
        pytest.raises(Unauthorized, match="webhook-signature does not match"),
    ):
        client.emit(profile_completed("webhook-wrong"))


def test_the_webhook_key_is_the_engines_own() -> None:
    from engine_client.signing import webhook_key

    from engine.signing import WebhookHeaders, verify_webhook
    from engine.signing import webhook_key as engine_key

    now = datetime.now(UTC)
    for secret in ("plain text", "whsec_" + base64.b64encode(bytes(range(32))).decode(), "whsec_c2VjcmV0"):
        assert webhook_key(secret) == engine_key(secret)
        headers = StandardWebhooks(secret).headers(b'{"a":1}', "msg_1", int(now.timestamp()))
        sent = WebhookHeaders(headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"])
        assert verify_webhook(engine_key(secret), sent, b'{"a":1}', now, 300) == "msg_1"


def test_the_async_client_emits_too(hook: Hook) -> None:
    async def main() -> tuple[str, ...]:
        async with AsyncClient(hook.url, token=TOKEN, retry=FAST) as client:
            return (await client.emit(profile_completed("async"))).accepted

    accepted = asyncio.run(main())
    assert accepted and accepted[0] in hook.stored()


def test_from_environ_reads_the_url_and_credentials(hook: Hook) -> None:
    with Client.from_environ({"ENGINE_URL": hook.url, "ENGINE_INGEST_SECRET": SECRET}, retry=FAST) as client:
        assert client.emit(profile_completed("environ")).accepted
    with pytest.raises(ValueError, match="ENGINE_URL is not set"):
        Client.from_environ({})
