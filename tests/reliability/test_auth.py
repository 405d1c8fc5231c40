"""Authentication and signatures at the HTTP edge, attacked from the outside.

The real Starlette app in-process (httpx.ASGITransport, see conftest.AsgiClient) over a SQLite
store. Every refusal is also checked to have changed nothing in the store.

* POST /events: bearer token and `X-Engine-Signature` (missing parts, wrong HMAC, stale and future
  timestamps, a signature moved to another body, a last-hex-digit change, replays);
* POST /webhooks/courier: `courier-signature` likewise;
* preference and admin routes refuse callers without the token;
* signed unsubscribe tokens: forgery, edits (recipient, scope, expiry), expiry, and that a good
  token turns off exactly one notification for exactly one recipient.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.clock import utcnow
from engine.http.app import build_app
from engine.signing import SignatureError, make_unsubscribe_token, read_unsubscribe_token, sign_courier, sign_ingest
from tests.runtime.support import booking_confirmed, message_sent, payment_succeeded, unbatched

from .conftest import row_counts

TOKEN = "auth-ingest-token-0123456789"
SECRET = "auth-ingest-secret"
WEBHOOK_SECRET = "auth-webhook-secret"
SECRET_KEY = "auth-unsubscribe-secret"
TOLERANCE = 300
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def rt(make_runtime: Any, sqlite_url: str) -> Any:
    return make_runtime(sqlite_url, ingest_token=TOKEN, ingest_secret=SECRET, webhook_secret=WEBHOOK_SECRET,
                        secret_key=SECRET_KEY, signature_tolerance_s=TOLERANCE, public_url="https://engine.example.com")


@pytest.fixture
def http(rt: Any, asgi_client: Any) -> Any:
    return asgi_client(build_app(rt))


def event_body(eid: str = "evt_auth_1", bid: str = "bk_auth_1") -> bytes:
    now = utcnow()
    return json.dumps(booking_confirmed(eid, bid, now + timedelta(days=3), now)).encode()


def flip_last(hexdigest: str) -> str:
    return hexdigest[:-1] + ("0" if hexdigest[-1] != "0" else "1")


def with_sig(header: str, name: str, new: str) -> str:
    return ",".join(f"{name}={new}" if part.startswith(name + "=") else part for part in header.split(","))


def sig_of(header: str, name: str) -> str:
    return next(part.split("=", 1)[1] for part in header.split(",") if part.startswith(name + "="))


# -- POST /events: the bearer token ---------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer"},
    {"Authorization": TOKEN},  # no scheme
    {"Authorization": f"Token {TOKEN}"},
    {"Authorization": "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()},
    {"Authorization": f"Bearer {TOKEN}x"},  # the token plus one character
    {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix of the token
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"Authorization": f"Bearer Bearer {TOKEN}"},
    {"X-Ingest-Token": TOKEN},
    {"Cookie": f"token={TOKEN}"},
], ids=lambda h: repr(h)[:40])
def test_events_without_a_valid_bearer_are_a_401(http: Any, rt: Any, headers: dict[str, str]) -> None:
    before = row_counts(rt.store.engine)
    r = http.post("/events", content=event_body(), headers={**JSON, **headers})
    assert r.status_code == 401 and r.json()["error"]
    assert row_counts(rt.store.engine) == before
    # Nor in the query string.
    assert (
        http.post(f"/events?access_token={TOKEN}&token={TOKEN}", content=event_body(), headers=JSON).status_code == 401
    )
    assert row_counts(rt.store.engine) == before


def test_the_right_bearer_is_accepted_whatever_the_scheme_case(http: Any) -> None:
    assert http.post("/events", content=event_body("evt_a"), headers={**JSON, **BEARER}).status_code == 202
    assert (
        http.post(
            "/events", content=event_body("evt_b", "bk_b"), headers={**JSON, "Authorization": f"bearer {TOKEN}"}
        ).status_code
        == 202
    )


# -- POST /events: X-Engine-Signature ---------------------------------------------------------------------------
def signed(body: bytes, t: int | None = None, secret: str = SECRET) -> dict[str, str]:
    return {**JSON, "X-Engine-Signature": sign_ingest(secret, body, int(time.time()) if t is None else t)}


def test_a_valid_signature_is_accepted(http: Any) -> None:
    body = event_body()
    r = http.post("/events", content=body, headers=signed(body))
    assert r.status_code == 202 and r.json()["accepted"] == ["evt_auth_1"]
    # Near the edge of the tolerance, still inside it.
    body2 = event_body("evt_auth_2", "bk_2")
    assert (
        http.post("/events", content=body2, headers=signed(body2, int(time.time()) - TOLERANCE + 30)).status_code == 202
    )


def _bad_signatures(body: bytes) -> dict[str, str]:
    now = int(time.time())
    good = sign_ingest(SECRET, body, now)
    digest = sig_of(good, "v1")
    return {
        "empty header": "",
        "garbage": "garbage",
        "t only": f"t={now}",
        "v1 only": f"v1={digest}",
        "empty t": f"t=,v1={digest}",
        "empty v1": f"t={now},v1=",
        "no comma": f"t={now} v1={digest}",
        "t not a number": f"t=abc,v1={digest}",
        "negative t": f"t=-{now},v1={digest}",
        "t with decimals": f"t={now}.0,v1={digest}",
        "unknown scheme only": f"t={now},v0={digest}",
        "wrong secret": sign_ingest("another-secret", body, now),
        "empty secret": sign_ingest("", body, now),
        "last hex digit changed": with_sig(good, "v1", flip_last(digest)),
        "first hex digit changed": with_sig(good, "v1", ("1" if digest[0] == "0" else "0") + digest[1:]),
        "truncated digest": with_sig(good, "v1", digest[:-1]),
        "digest plus a digit": with_sig(good, "v1", digest + "0"),
        "uppercase hex digest": with_sig(good, "v1", digest.upper()) if digest.upper() != digest else "t=0,v1=0",
        "t changed after signing": good.replace(f"t={now}", f"t={now + 1}"),
        "stale (older than the tolerance)": sign_ingest(SECRET, body, now - TOLERANCE - 60),
        "an hour old": sign_ingest(SECRET, body, now - 3600),
        "future (beyond the tolerance)": sign_ingest(SECRET, body, now + TOLERANCE + 60),
        "far future": sign_ingest(SECRET, body, now + 10 ** 9),
        "epoch zero": sign_ingest(SECRET, body, 0),
        "milliseconds instead of seconds": sign_ingest(SECRET, body, now * 1000),
        "signature of the empty body": sign_ingest(SECRET, b"", now),
        "signature of the body with a trailing newline": sign_ingest(SECRET, body + b"\n", now),
    }


@pytest.mark.parametrize("case", sorted(_bad_signatures(b"x")))
def test_bad_signatures_are_a_401_and_store_nothing(http: Any, rt: Any, case: str) -> None:
    body = event_body()
    header = _bad_signatures(body)[case]
    before = row_counts(rt.store.engine)
    r = http.post("/events", content=body, headers={**JSON, "X-Engine-Signature": header})
    assert r.status_code == 401, (case, r.status_code, r.text)
    assert row_counts(rt.store.engine) == before


def test_a_valid_signature_reused_on_a_different_body_is_a_401(http: Any, rt: Any) -> None:
    body_a, body_b = event_body("evt_a", "bk_a"), event_body("evt_b", "bk_b")
    header = signed(body_a)
    before = row_counts(rt.store.engine)
    for other in (body_b, body_a + b" ", body_a.replace(b'"evt_a"', b'"evt_c"'), b'{"events": [' + body_a + b"]}"):
        assert http.post("/events", content=other, headers=header).status_code == 401
    assert row_counts(rt.store.engine) == before
    assert http.post("/events", content=body_a, headers=header).status_code == 202  # the original still works


def test_a_replayed_signed_request_gets_the_first_answer_and_stores_nothing_new(http: Any, rt: Any) -> None:
    """A fast retry (the same X-Engine-Signature and body, byte for byte) after a lost answer: the
    first answer again, not a 401, and nothing stored twice."""
    body = event_body()
    header = signed(body)
    first = http.post("/events", content=body, headers=header)
    assert first.status_code == 202 and first.json()["accepted"] == ["evt_auth_1"] and first.json()["scheduled"] > 0
    after_first = row_counts(rt.store.engine)
    for _ in range(2):
        again = http.post("/events", content=body, headers=header)
        assert (again.status_code, again.content) == (202, first.content)
        assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert row_counts(rt.store.engine) == after_first


def _reformatted(header: str, name: str) -> dict[str, str]:
    """The same verified signature written differently: every one still passes verify_ingest/verify_courier."""
    t, sig = header.split(",")
    return {
        "trailing comma": header + ",",
        "leading space": " " + header,
        "spaces after the comma": header.replace(",", ", "),
        "parts reordered": f"{sig},{t}",
        "a bogus extra signature": f"{header},{name}=00",
        "the signature twice": f"{header},{sig}",
        "an unknown extra part": f"{header},v0=x",
    }




@pytest.mark.parametrize("variant", sorted(_reformatted("t=1,v1=ab", "v1")))
def test_regression_a_replay_with_a_respelled_signature_header_gets_the_first_answer(
    http: Any, rt: Any, variant: str
) -> None:
    body = event_body()
    header = sign_ingest(SECRET, body, int(time.time()))
    first = http.post("/events", content=body, headers={**JSON, "X-Engine-Signature": header})
    assert first.status_code == 202
    before = row_counts(rt.store.engine)
    again = _reformatted(header, "v1")[variant]
    r = http.post("/events", content=body, headers={**JSON, "X-Engine-Signature": again})
    assert (r.status_code, r.content) == (202, first.content), (variant, r.status_code, r.text)
    assert row_counts(rt.store.engine) == before


@pytest.mark.parametrize("variant", sorted(_reformatted("t=1,signature=ab", "signature")))
def test_regression_a_courier_replay_with_a_respelled_signature_header_is_refused(
    http: Any, rt: Any, variant: str
) -> None:
    now = datetime.now(UTC)
    rt.emit(payment_succeeded("evt_pay_replay", "pay_replay", now), now=now)
    rt.sweep(now)
    [row] = rt.store.notifications(notification="client_payment_receipt")
    body = json.dumps({"type": "message:updated", "data": {"id": row["request_id"], "status": "DELIVERED"}}).encode()
    header = sign_courier(WEBHOOK_SECRET, body, int(time.time() * 1000))
    assert (
        http.post("/webhooks/courier", content=body, headers={**JSON, "courier-signature": header}).status_code == 200
    )
    again = _reformatted(header, "signature")[variant]
    r = http.post("/webhooks/courier", content=body, headers={**JSON, "courier-signature": again})
    assert r.status_code in (401, 409), (variant, r.status_code, r.text)




def test_regression_a_non_ascii_ingest_signature_is_refused_not_a_500(http: Any, rt: Any) -> None:
    body = event_body()
    header = f"t={int(time.time())},v1=\u00e9".encode("latin-1")
    r = http.post("/events", content=body, headers={**JSON, "X-Engine-Signature": header})
    assert r.status_code == 401, r.status_code


def test_regression_a_non_ascii_courier_signature_is_refused_not_a_500(http: Any) -> None:
    header = f"t={int(time.time() * 1000)},signature=\u00e9".encode("latin-1")
    r = http.post("/webhooks/courier", content=b"{}", headers={**JSON, "courier-signature": header})
    assert r.status_code == 401, r.status_code


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_regression_a_non_ascii_unsubscribe_signature_is_refused_not_a_500(http: Any, method: str) -> None:
    body = make_unsubscribe_token(SECRET_KEY, "usr_a", "client_new_message", utcnow()).split(".")[0]
    r = http.request(method, "/unsubscribe", params={"token": f"{body}.\u00e9"})
    assert r.status_code == 400, r.status_code


def test_the_bearer_wins_over_a_bad_signature_and_a_good_signature_over_a_bad_bearer(http: Any) -> None:
    body = event_body()
    assert (
        http.post("/events", content=body, headers={**BEARER, **JSON, "X-Engine-Signature": "garbage"}).status_code
        == 202
    )
    body2 = event_body("evt_2", "bk_2")
    assert (
        http.post("/events", content=body2, headers={**signed(body2), "Authorization": "Bearer wrong"}).status_code
        == 202
    )


def test_a_signature_is_ignored_when_no_ingest_secret_is_configured(
    make_runtime: Any, sqlite_url: str, asgi_client: Any
) -> None:
    rt = make_runtime(sqlite_url, ingest_token=TOKEN)
    http = asgi_client(build_app(rt))
    body = event_body()
    for secret in (SECRET, ""):  # whatever secret the attacker guesses, an unset one included
        assert http.post("/events", content=body, headers=signed(body, secret=secret)).status_code == 401
    assert rt.store.event_count() == 0


# -- POST /webhooks/courier ---------------------------------------------------------------------------------------
def sent_notification(rt: Any) -> dict[str, Any]:
    now = utcnow()
    rt.emit(payment_succeeded("evt_pay", "pay_1", now), now=now)
    rt.sweep(now)  # no queue: delivered inline to the outbox backend
    [row] = rt.store.notifications(notification="client_payment_receipt")
    assert row["status"] == "sent" and row["request_id"]
    return row


def courier_headers(body: bytes, t_ms: int | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {**JSON, "courier-signature": sign_courier(secret, body, int(time.time() * 1000) if t_ms is None else t_ms)}


def test_courier_webhooks_need_a_valid_fresh_signature(http: Any, rt: Any) -> None:
    row = sent_notification(rt)
    body = json.dumps(
        {"type": "message:updated", "data": {"id": row["request_id"], "status": "UNDELIVERABLE"}}
    ).encode()
    now_ms = int(time.time() * 1000)
    good = sign_courier(WEBHOOK_SECRET, body, now_ms)
    digest = sig_of(good, "signature")
    refused = {
        "missing": None,
        "empty": "",
        "garbage": "garbage",
        "t only": f"t={now_ms}",
        "signature only": f"signature={digest}",
        "wrong secret": sign_courier("another", body, now_ms),
        "last hex digit changed": with_sig(good, "signature", flip_last(digest)),
        "truncated": with_sig(good, "signature", digest[:-2]),
        "t changed after signing": good.replace(f"t={now_ms}", f"t={now_ms + 1}"),
        "stale": sign_courier(WEBHOOK_SECRET, body, now_ms - (TOLERANCE + 60) * 1000),
        "future": sign_courier(WEBHOOK_SECRET, body, now_ms + (TOLERANCE + 60) * 1000),
        "seconds instead of milliseconds": sign_courier(WEBHOOK_SECRET, body, now_ms // 1000),
        "the ingest scheme": sign_ingest(WEBHOOK_SECRET, body, now_ms // 1000),
        "signed with the ingest secret": sign_courier(SECRET, body, now_ms),
        "another body's signature": sign_courier(WEBHOOK_SECRET, body.replace(b"UNDELIVERABLE", b"DELIVERED"), now_ms),
    }
    before = row_counts(rt.store.engine)
    for case, header in refused.items():
        headers = dict(JSON) if header is None else {**JSON, "courier-signature": header}
        r = http.post("/webhooks/courier", content=body, headers=headers)
        assert r.status_code == 401, (case, r.status_code, r.text)
    assert row_counts(rt.store.engine) == before
    assert rt.store.notifications(notification="client_payment_receipt")[0]["delivery_status"] is None
    # The genuine one is applied.
    r = http.post("/webhooks/courier", content=body, headers={**JSON, "courier-signature": good})
    assert r.status_code == 200 and r.json() == {"result": "applied"}
    assert rt.store.notifications(notification="client_payment_receipt")[0]["delivery_status"] == "undeliverable"


def test_a_replayed_courier_webhook_changes_nothing(http: Any, rt: Any) -> None:
    row = sent_notification(rt)
    delivered = json.dumps(
        {"type": "message:updated", "data": {"id": row["request_id"], "status": "DELIVERED"}}
    ).encode()
    clicked = json.dumps({"type": "message:updated", "data": {"id": row["request_id"], "status": "CLICKED"}}).encode()
    d_headers, c_headers = courier_headers(delivered), courier_headers(clicked)
    assert http.post("/webhooks/courier", content=delivered, headers=d_headers).json() == {"result": "applied"}
    assert http.post("/webhooks/courier", content=clicked, headers=c_headers).json() == {"result": "applied"}
    settled = row_counts(rt.store.engine), rt.store.history(row["id"])
    # Replaying the captured DELIVERED (older) and CLICKED webhooks, byte for byte, changes nothing.
    for body, headers in ((delivered, d_headers), (clicked, c_headers), (delivered, d_headers)):
        r = http.post("/webhooks/courier", content=body, headers=headers)
        assert r.status_code in (200, 401, 409)
        if r.status_code == 200:
            assert r.json() == {"result": "duplicate"}
    assert (row_counts(rt.store.engine), rt.store.history(row["id"])) == settled
    assert rt.store.notifications(notification="client_payment_receipt")[0]["delivery_status"] == "clicked"


def test_webhooks_are_refused_without_a_configured_secret(make_runtime: Any, sqlite_url: str, asgi_client: Any) -> None:
    rt = make_runtime(sqlite_url, ingest_token=TOKEN)
    http = asgi_client(build_app(rt))
    body = json.dumps({"type": "message:updated", "data": {"id": "1-x", "status": "DELIVERED"}}).encode()
    for secret in ("", WEBHOOK_SECRET):
        assert (
            http.post("/webhooks/courier", content=body, headers=courier_headers(body, secret=secret)).status_code
            == 401
        )
    assert row_counts(rt.store.engine)["webhook_receipts"] == 0


# -- preference and admin routes ------------------------------------------------------------------------------------
ADMIN_ROUTES = [
    ("GET", "/recipients/usr_c_1/preferences", None),
    ("PUT", "/recipients/usr_c_1/preferences", {"preferences": {"client_new_message": False}}),
    ("GET", "/notifications", None),
    ("GET", "/notifications/upcoming", None),
]


def _call(http: Any, method: str, path: str, body: Any, headers: dict[str, Any]) -> Any:
    content = None if body is None else json.dumps(body).encode()
    return http.request(method, path, content=content, headers={**JSON, **headers})


@pytest.mark.parametrize("method, path, body", ADMIN_ROUTES)
def test_admin_routes_refuse_callers_without_the_token(http: Any, rt: Any, method: str, path: str, body: Any) -> None:
    now = utcnow()
    rt.emit(booking_confirmed("evt_1", "bk_1", now + timedelta(days=2), now), now=now)
    before = row_counts(rt.store.engine)
    raw = b"" if body is None else json.dumps(body).encode()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": TOKEN},
        {"X-Engine-Signature": sign_ingest(SECRET, raw, int(time.time()))},  # ingest credentials are not admin ones
        {"courier-signature": sign_courier(WEBHOOK_SECRET, raw, int(time.time() * 1000))},
    ):
        r = _call(http, method, path, body, headers)
        assert r.status_code == 401, (headers, r.status_code)
        assert "usr_c_1" not in r.text and "bk_1" not in r.text
    r = _call(http, method, path + f"?token={TOKEN}&access_token={TOKEN}", body, {})
    assert r.status_code == 401
    assert row_counts(rt.store.engine) == before
    assert rt.store.preferences("usr_c_1") == {}
    r = _call(http, method, path, body, BEARER)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("method, path, body", ADMIN_ROUTES)
def test_without_any_credentials_configured_only_this_machine_gets_in(
    make_runtime: Any, sqlite_url: str, asgi_client: Any, method: str, path: str, body: Any
) -> None:
    rt = make_runtime(sqlite_url)  # no token, no secret: the out-of-the-box mode
    app = build_app(rt)
    remote = asgi_client(app, peer=("203.0.113.7", 40000))
    local = asgi_client(app, peer=("127.0.0.1", 40000))
    assert _call(remote, method, path, body, {}).status_code == 401
    assert remote.post("/events", content=event_body(), headers=JSON).status_code == 401
    assert rt.store.event_count() == 0 and rt.store.preferences("usr_c_1") == {}
    assert _call(local, method, path, body, {}).status_code == 200


@pytest.mark.parametrize("method, path, body", ADMIN_ROUTES)
def test_with_only_an_ingest_secret_admin_routes_refuse_everyone(make_runtime: Any, sqlite_url: str, asgi_client: Any,
                                                                method: str, path: str, body: Any) -> None:
    rt = make_runtime(sqlite_url, ingest_secret=SECRET)
    local = asgi_client(build_app(rt))
    raw = b"" if body is None else json.dumps(body).encode()
    for headers in ({}, {"X-Engine-Signature": sign_ingest(SECRET, raw, int(time.time()))}):
        assert _call(local, method, path, body, headers).status_code == 401
    body_ = event_body()
    assert local.post("/events", content=body_, headers=JSON).status_code == 401  # not open, even from loopback


# -- unsubscribe tokens ------------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def edit(token: str, **changes: Any) -> str:
    """The token's payload edited (r: recipient, s: scope, e: expiry), its signature kept."""
    body, _, sig = token.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    return _b64(json.dumps(payload, separators=(",", ":")).encode()) + "." + sig


def unsubscribe(http: Any, token: str) -> Any:
    return http.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"})


def test_read_unsubscribe_token_round_trip_and_refusals() -> None:
    now = utcnow()
    token = make_unsubscribe_token(SECRET_KEY, "usr_a", "client_new_message", now)
    found = read_unsubscribe_token(SECRET_KEY, token, now)
    assert (found.recipient_id, found.scope) == ("usr_a", "client_new_message")
    assert found.expires > now
    bad = [
        edit(token, r="usr_b"),
        edit(token, s="client_booking_reminder_24h"),
        edit(token, e=int((now + timedelta(days=3650)).timestamp())),
        make_unsubscribe_token("other", "usr_a", "client_new_message", now),
        token.split(".")[0] + "." + flip_last(token.split(".")[1]),
        token.split(".")[0] + "=." + token.split(".")[1],  # the same payload, encoded differently
        token.split(".")[0], "", ".", "a.b.c",
    ]
    for t in bad:
        with pytest.raises(SignatureError):
            read_unsubscribe_token(SECRET_KEY, t, now)
    with pytest.raises(SignatureError, match="expired"):
        read_unsubscribe_token(SECRET_KEY, token, now + timedelta(days=366))


def test_forged_or_edited_unsubscribe_tokens_are_refused(http: Any, rt: Any) -> None:
    now = utcnow()
    good = make_unsubscribe_token(SECRET_KEY, "usr_a", "client_new_message", now)
    body, _, sig = good.partition(".")
    forged = {
        "last hex digit changed": f"{body}.{flip_last(sig)}",
        "random signature": f"{body}.{'ab' * 32}",
        "another secret": make_unsubscribe_token("not-the-secret", "usr_a", "client_new_message", now),
        "the ingest secret": make_unsubscribe_token(SECRET, "usr_a", "client_new_message", now),
        "recipient A edited to B": edit(good, r="usr_b"),
        "scope X edited to Y": edit(good, s="client_booking_reminder_24h"),
        "scope edited to a category": edit(good, s="category:activity"),
        "expiry extended": edit(good, e=int((now + timedelta(days=3650)).timestamp())),
        "B's payload under A's signature": make_unsubscribe_token(SECRET_KEY, "usr_b", "client_new_message", now).split(
            "."
        )[0]
        + "."
        + sig,
        "expired (366 days old)": make_unsubscribe_token(
            SECRET_KEY, "usr_a", "client_new_message", now - timedelta(days=366)
        ),
        "expired a second ago": make_unsubscribe_token(
            SECRET_KEY, "usr_a", "client_new_message", now, valid=timedelta(seconds=-1)
        ),
        "no signature": body,
        "empty signature": body + ".",
        "empty": "",
    }
    for case, token in forged.items():
        page = http.get("/unsubscribe", params={"token": token})
        assert page.status_code == 400, (case, page.status_code)
        r = unsubscribe(http, token)
        assert r.status_code == 400, (case, r.status_code)
    assert http.post("/unsubscribe", data={"List-Unsubscribe": "One-Click"}).status_code == 400  # no token at all
    assert rt.store.preferences("usr_a") == {} and rt.store.preferences("usr_b") == {}
    assert row_counts(rt.store.engine)["preferences"] == 0


def test_a_good_token_turns_off_exactly_that_notification_for_exactly_that_recipient(http: Any, rt: Any) -> None:
    now = utcnow()
    token = make_unsubscribe_token(SECRET_KEY, "usr_c_1", "client_new_message", now)
    assert http.get("/unsubscribe", params={"token": token}).status_code == 200
    assert rt.store.preferences("usr_c_1") == {}  # a GET (a mail scanner following the link) changes nothing
    r = unsubscribe(http, token)
    assert r.status_code == 200 and r.json() == {"unsubscribed": "client_new_message", "recipient": "usr_c_1"}
    assert unsubscribe(http, token).status_code == 200  # clicking twice is harmless
    assert rt.store.preferences("usr_c_1") == {"client_new_message": False}
    assert row_counts(rt.store.engine)["preferences"] == 1
    # At send time: usr_c_1's new-message email is skipped; usr_c_2's is sent; usr_c_1's reminders still go out.
    rt.emit(message_sent("evt_m1", "msg_1", "conv_1", now, to="usr_c_1"), now=now)
    rt.emit(message_sent("evt_m2", "msg_2", "conv_2", now, to="usr_c_2"), now=now)
    start = now + timedelta(days=3)
    rt.emit(booking_confirmed("evt_b1", "bk_1", start, now, client="usr_c_1"), now=now)
    rt.sweep(now)
    rt.sweep(start - timedelta(minutes=29))  # both reminders fall due
    fate = {
        (n["notification"], n["recipient_id"]): (n["status"], n["reason"]) for n in rt.store.notifications(limit=1000)
    }
    assert fate[("client_new_message", "usr_c_1")] == ("skipped", "opted_out")
    assert fate[("client_new_message", "usr_c_2")][0] == "sent"
    assert fate[("client_booking_reminder_24h", "usr_c_1")][0] == "sent"
    assert fate[("client_booking_reminder_30m", "usr_c_1")][0] == "sent"
    assert fate[("client_booking_confirmation", "usr_c_1")][0] == "sent"
    assert rt.store.preferences("usr_c_2") == {} and rt.store.preferences("usr_p_1") == {}


def test_a_token_from_a_rendered_email_carries_its_own_notification_and_recipient(http: Any, rt: Any) -> None:
    """The link the engine itself puts in a message names that message's notification and recipient."""
    from urllib.parse import parse_qs, urlparse

    now = utcnow()
    unbatched(rt).emit(message_sent("evt_m", "msg_1", "conv_1", now, to="usr_c_9"), now=now)
    [row] = rt.store.notifications(notification="client_new_message", with_payload=True)
    link = urlparse(row["message"]["data"]["unsubscribe_url"])
    token = parse_qs(link.query)["token"][0]
    found = read_unsubscribe_token(SECRET_KEY, token, now)
    assert (found.recipient_id, found.scope) == ("usr_c_9", "client_new_message")
    assert unsubscribe(http, token).status_code == 200
    assert rt.store.preferences("usr_c_9") == {"client_new_message": False}


def test_unsubscribe_is_off_without_a_secret_key(make_runtime: Any, sqlite_url: str, asgi_client: Any) -> None:
    rt = make_runtime(sqlite_url, ingest_token=TOKEN)
    http = asgi_client(build_app(rt))
    token = make_unsubscribe_token("", "usr_a", "client_new_message", utcnow())  # signed with the empty secret
    assert http.get("/unsubscribe", params={"token": token}).status_code == 404
    assert unsubscribe(http, token).status_code == 404
    assert rt.store.preferences("usr_a") == {}
