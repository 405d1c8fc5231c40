"""No personal data in the logs, and none in clear in the database when ENGINE_ENCRYPTION_KEY is set.

A real `engine serve` (subprocess, SQLite store and queue in a scratch directory, ENGINE_LOG_LEVEL=DEBUG)
delivers to the Courier stand-in. We post events of several types carrying distinctive personal
data (registrations with phone numbers, a booking whose 24 h reminders fall due within seconds, a
payment, two messages of one conversation with preview text, which the New Message rule collects
into one batch (its window shortened to seconds in the scratch copy of the configuration) and sends
with both previews, a duplicate, an invalid event refused with a 422), let one
send fail once and be retried, post a Courier delivery webhook, read the admin routes, wait until
the stand-in has every send, stop the engine, and then search everything it logged for:

* every email address, phone number, person name and message preview of the events posted
  (the refused event's too), in the forms a log line could carry them (as is, JSON-escaped,
  digits-only phone numbers);
* every value of the rendered template data, as Courier received it (links with tokens, amounts,
  local times, names...).

The same holds with ENGINE_LOG_FORMAT=json, where every line must also be one JSON object with its
time, level, logger and message, and no field but the ids the engine names (`engine.logs.IDS`).

With ENGINE_ENCRYPTION_KEY set, the raw bytes of the SQLite files (database, WAL, queue) must
not contain any email address or name either.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.signing import sign_courier
from tests.support.courier_standin import CourierStandin
from tests.support.engine_process import ROOT, Engine, copy_config, engine_env

TOKEN = "pii-ingest-token"
WEBHOOK_SECRET = "pii-webhook-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


CLIENT = {"id": "usr_pii_c1", "email": "zephyrine.quillfeather@pii-example.org", "name": "Zéphyrine Quillfeather",
          "timezone": "Europe/Paris", "phone": "+33 6 12 34 56 78"}
PRACTITIONER = {
    "id": "usr_pii_p1",
    "email": "bartholomew.okonkwo@pii-example.net",
    "name": "Bartholomew Okonkwo-Lindqvist",
    "timezone": "America/Chicago",
    "phone": "+1-415-555-0199",
}
PREVIEW = "Please bring the lavender blanket and the brass singing bowl on Thursday"
PREVIEW_2 = "Also the cedarwood oil from the Lisbon market, if Ottoline can spare it"
BATCH_WINDOW = "5s"  # the New Message batch, shortened so that the flow sees it collect and go out
INVALID_PERSON = {"id": "usr_pii_bad", "email": "ignatius.fairweather@@invalid-pii", "name": "Ignatius Fairweather",
                  "timezone": "Europe/Dublin", "phone": "+353 87 765 4321"}


def estuary_events(now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    start = now + timedelta(hours=24, seconds=8)  # the 24 h reminders fall due 8 s from now
    booking = {"id": "bk_pii_7731", "start_time": iso(start), "end_time": iso(start + timedelta(hours=1)),
               "service": {"id": "svc_pii", "name": "Moonlit Sound Bath Therapy"},
               "meeting_url": "https://meet.example.com/room-secret-4417"}
    valid = [
        {
            "id": "evt_pii_reg_c",
            "type": "user.registered",
            "occurred_at": iso(now),
            "data": {
                "user": {**CLIENT, "role": "client"},
                "verification_url": "https://estuary.app/verify-email?token=vrf_c_9f8e7d6c5b4a",
            },
        },
        {
            "id": "evt_pii_reg_p",
            "type": "user.registered",
            "occurred_at": iso(now),
            "data": {
                "user": {**PRACTITIONER, "role": "practitioner"},
                "verification_url": "https://estuary.app/verify-email?token=vrf_p_1a2b3c4d5e6f",
            },
        },
        {
            "id": "evt_pii_booking",
            "type": "booking.confirmed",
            "occurred_at": iso(now),
            "data": {"booking": booking, "client": CLIENT, "practitioner": PRACTITIONER},
        },
        {
            "id": "evt_pii_payment",
            "type": "payment.succeeded",
            "occurred_at": iso(now),
            "data": {
                "payment": {
                    "id": "pay_pii_5521",
                    "amount": 12345,
                    "currency": "EUR",
                    "receipt_url": "https://pay.example.com/receipts/rcpt_secret_5521",
                    "practitioner_amount": 10400,
                },
                "client": CLIENT,
                "practitioner": PRACTITIONER,
                "booking": booking,
            },
        },
        {
            "id": "evt_pii_message",
            "type": "message.sent",
            "occurred_at": iso(now),
            "data": {
                "message": {"id": "msg_pii_1", "conversation_id": "conv_pii_1", "preview": PREVIEW},
                "sender": PRACTITIONER,
                "recipient": {**CLIENT, "role": "client"},
            },
        },
        {
            "id": "evt_pii_message_2",
            "type": "message.sent",
            "occurred_at": iso(now + timedelta(seconds=1)),
            "data": {
                "message": {"id": "msg_pii_2", "conversation_id": "conv_pii_1", "preview": PREVIEW_2},
                "sender": PRACTITIONER,
                "recipient": {**CLIENT, "role": "client"},
            },
        },
    ]
    invalid = {"id": "evt_pii_invalid", "type": "booking.confirmed", "occurred_at": iso(now), "data": {
        "booking": {**booking, "id": "bk_pii_bad"}, "client": INVALID_PERSON}}  # a bad email, no practitioner
    return valid, invalid


EXPECTED_SENDS = {
    ("client_welcome", CLIENT["id"]),
    ("client_email_verification", CLIENT["id"]),
    ("practitioner_welcome", PRACTITIONER["id"]),
    ("client_booking_confirmation", CLIENT["id"]),
    ("practitioner_booking_notification", PRACTITIONER["id"]),
    ("client_booking_reminder_24h", CLIENT["id"]),
    ("practitioner_session_reminder_24h", PRACTITIONER["id"]),
    ("client_payment_receipt", CLIENT["id"]),
    ("client_new_message", CLIENT["id"]),
}


def forms(value: str) -> set[str]:
    """The spellings a value could take in a log line."""
    out = {value, json.dumps(value)[1:-1], value.encode("unicode_escape").decode()}
    return {f for f in out if f}


def phone_forms(phone: str) -> set[str]:
    digits = re.sub(r"\D", "", phone)
    return forms(phone) | {digits, "+" + digits}


def personal_data(valid: list[dict[str, Any]], invalid: dict[str, Any]) -> dict[str, set[str]]:
    """What must not be logged, by kind, from the events posted."""
    people = [CLIENT, PRACTITIONER, INVALID_PERSON]
    return {
        "email": {f for p in people for f in forms(p["email"])},
        "phone": {f for p in people for f in phone_forms(p["phone"])},
        "name": {f for p in people for f in forms(p["name"])}
        | {f for p in people for part in p["name"].split() for f in forms(part) if len(part) > 6},
        "preview": forms(PREVIEW) | forms(PREVIEW_2),
    }


def template_values(requests: list[dict[str, Any]]) -> set[str]:
    """Every rendered template data value Courier received (strings of 5+ characters, numbers as text)."""
    values: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, bool) or node is None:
            return
        else:
            text = str(node)
            if len(text) >= 5:
                values.update(forms(text))

    for request in requests:
        walk(request["body"]["message"].get("data") or {})
    return values


def pii_env(
    workdir: Path, courier: CourierStandin, encryption_key: str | None, log_format: str = "text"
) -> dict[str, str]:
    env = engine_env(workdir, courier.url, COURIER_TIMEOUT="2", COURIER_WEBHOOK_SECRET=WEBHOOK_SECRET,
                     ENGINE_INGEST_TOKEN=TOKEN, ENGINE_SECRET_KEY="pii-unsubscribe-secret",
                     ENGINE_PUBLIC_URL="https://engine.example.com", ENGINE_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1",
                     ENGINE_LOG_FORMAT=log_format)
    if encryption_key:
        env["ENGINE_ENCRYPTION_KEY"] = encryption_key
    return env


def run_flow(
    workdir: Path, courier: CourierStandin, encryption_key: str | None, log_format: str = "text"
) -> dict[str, Any]:
    """Post the events, wait for every send, exercise the other routes, stop the engine; what happened."""
    courier.fail_next(1, status=503)  # one send is retried: the retry path logs too
    engine = Engine(workdir, pii_env(workdir, courier, encryption_key, log_format), "serve")
    try:
        engine.start()
        # After the start, which may take seconds on a loaded machine: the 24 h reminders are due 8 s
        # after the events are made, and a reminder already past when it is scheduled is skipped.
        valid, invalid = estuary_events(datetime.now(UTC))
        with httpx.Client(base_url=f"http://127.0.0.1:{engine.port}", timeout=15) as client:
            for event in valid:
                r = client.post("/events", json=event, headers=AUTH)
                assert r.status_code == 202 and r.json()["accepted"] == [event["id"]], r.text
            assert client.post("/events", json=valid[0], headers=AUTH).json()["duplicates"] == [valid[0]["id"]]
            refused = client.post("/events", json=invalid, headers=AUTH)
            assert refused.status_code == 422, refused.text
            assert client.post("/events", json={"events": [valid[1], invalid]}, headers=AUTH).status_code == 422
            assert client.post("/events", json=valid[1]).status_code == 401

            deadline = time.monotonic() + 60
            sent: dict[tuple[str, str], dict[str, Any]] = {}
            while time.monotonic() < deadline:
                rows = client.get("/notifications", params={"status": "sent", "limit": "1000"}, headers=AUTH).json()[
                    "notifications"
                ]
                sent = {(n["notification"], n["recipient_id"]): n for n in rows}
                if set(sent) >= EXPECTED_SENDS and len(courier.requests) >= len(EXPECTED_SENDS):
                    break
                time.sleep(0.2)
            missing = EXPECTED_SENDS - set(sent)
            assert not missing, f"never sent: {sorted(missing)}\n{engine.log.read_text()[-3000:]}"

            # A delivery webhook for one of them, and the reads an operator makes.
            receipt = sent[("client_payment_receipt", CLIENT["id"])]
            body = json.dumps(
                {"type": "message:updated", "data": {"id": receipt["request_id"], "status": "DELIVERED"}}
            ).encode()
            r = client.post(
                "/webhooks/courier",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "courier-signature": sign_courier(WEBHOOK_SECRET, body, int(time.time() * 1000)),
                },
            )
            assert r.status_code == 200 and r.json() == {"result": "applied"}, r.text
            assert client.get("/notifications/upcoming", params={"within": "30d"}, headers=AUTH).status_code == 200
            assert client.get(f"/recipients/{CLIENT['id']}/preferences", headers=AUTH).status_code == 200
            assert client.get("/metrics").status_code == 200
            # The unsubscribe page of the link in the new-message email (a GET changes nothing).
            from urllib.parse import urlparse

            [message] = [
                q["body"]["message"]
                for q in courier.requests
                if "message_preview" in q["body"]["message"].get("data", {})
            ]
            # Both messages went out as one batch, their previews in its items.
            assert message["data"]["count"] == 2, message["data"]
            assert [item["message"]["preview"] for item in message["data"]["items"]] == [PREVIEW, PREVIEW_2]
            link = urlparse(message["data"]["unsubscribe_url"])
            assert client.get(f"{link.path}?{link.query}").status_code == 200
    finally:
        engine.stop()
    assert len(courier.injected) == 1, courier.injected  # the 503 happened, and its send was retried (all arrived)
    return {"valid": valid, "invalid": invalid, "log": engine.log.read_text(encoding="utf-8", errors="replace"),
            "requests": courier.requests, "workdir": workdir}


def _pattern(needle: str) -> re.Pattern[str]:
    """The needle, case-insensitive, not as part of a longer word or number (12345 in 0.1234567 is no leak)."""
    left = r"(?<![0-9A-Za-z])" if needle[:1].isalnum() else ""
    right = r"(?![0-9A-Za-z])" if needle[-1:].isalnum() else ""
    return re.compile(left + re.escape(needle) + right, re.IGNORECASE)


def leaks(text: str, needles: dict[str, set[str]]) -> dict[str, list[str]]:
    found = {kind: sorted(n for n in values if _pattern(n).search(text)) for kind, values in needles.items()}
    return {k: v for k, v in found.items() if v}


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ (\S+): ", re.MULTILINE)


def records(log: str) -> list[tuple[str, str]]:
    """(logger name, whole record with its continuation lines) for each log record (setup_logging's format)."""
    starts = list(_RECORD.finditer(log))
    out = [("<preamble>", log[:starts[0].start()] if starts else log)]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(log)
        out.append((m.group(1), log[m.start():end]))
    return out


def context(text: str, needle: str, width: int = 160) -> str:
    i = text.lower().find(needle.lower())
    return text[max(0, i - width):i + len(needle) + width].replace("\n", " | ")


_BATCH_WINDOW_LINE = re.compile(r"^([ \t]+batch:\n(?:[ \t]+\w+: .*\n)*?[ \t]+window: )(\S+)$", re.MULTILINE)


def short_batches(workdir: Path) -> Path:
    """The copied configuration with only the New Message rules' batch `window:` set to BATCH_WINDOW."""
    from engine.rules.loader import load
    from engine.rules.timeparse import parse_duration

    for name in ("client", "practitioner"):
        path = workdir / "rules" / f"{name}.yaml"
        text, changed = _BATCH_WINDOW_LINE.subn(lambda m: m.group(1) + BATCH_WINDOW, path.read_text(encoding="utf-8"))
        assert changed == 1, f"{path.name}: expected one batch window, found {changed}"
        path.write_text(text, encoding="utf-8")
    rules = load(str(workdir / "notifications.yaml")).notifications
    for name in ("client_new_message", "practitioner_new_message"):
        batch = rules[name].batch
        assert batch is not None and batch.window == parse_duration(BATCH_WINDOW), (name, batch)
    return workdir


def _flow(tmp_path_factory: pytest.TempPathFactory, encrypted: bool, log_format: str = "text") -> dict[str, Any]:
    from cryptography.fernet import Fernet

    scratch = tmp_path_factory.mktemp(("encrypted" if encrypted else "plain") + "-" + log_format)
    workdir = short_batches(copy_config(scratch))
    with CourierStandin(token="tok") as courier:
        flow = run_flow(workdir, courier, Fernet.generate_key().decode() if encrypted else None, log_format)
    return {**flow, "format": log_format}


@pytest.fixture(scope="module")
def plain_flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The flow without ENGINE_ENCRYPTION_KEY (what is logged must not depend on it)."""
    return _flow(tmp_path_factory, encrypted=False)


@pytest.fixture(scope="module")
def encrypted_flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The flow with ENGINE_ENCRYPTION_KEY set (a fresh Fernet key)."""
    return _flow(tmp_path_factory, encrypted=True)


@pytest.fixture(scope="module")
def json_flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The flow with ENGINE_LOG_FORMAT=json."""
    return _flow(tmp_path_factory, encrypted=False, log_format="json")


def json_records(log: str) -> list[dict[str, Any]]:
    """Each line of a JSON log as its object (an assertion names the first line that is not one)."""
    out = []
    for number, line in enumerate(log.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line[:300]!r}"
        out.append(record)
    return out


def needles_for(flow: dict[str, Any]) -> dict[str, set[str]]:
    needles = personal_data(flow["valid"], flow["invalid"])
    # The rendered data, less what comes from the configuration rather than the events (app name, URLs).
    from engine.rules.loader import load

    app = load(str(ROOT / "notifications.yaml")).app
    constants = {f for v in (app.name, app.frontend_url, app.support_email) for f in forms(v)}
    # Recipient ids are pseudonymous keys, logged on purpose (a send's outcome names its recipient):
    # a template that carries one does not make it personal data.
    ids = {f for person in (CLIENT, PRACTITIONER, INVALID_PERSON) for f in forms(person["id"])}
    # A batch's items carry its events' data whole, a person's role among it: a value of the catalog
    # (the word every client_* notification name starts with), not something about the person.
    roles = {"client", "practitioner"}
    needles["template data"] = template_values(flow["requests"]) - constants - ids - roles
    assert needles["template data"], "Courier received no template data"
    # The data really went out (so its absence from the log means something).
    sent_text = json.dumps(flow["requests"], ensure_ascii=False)
    assert CLIENT["email"] in sent_text and PREVIEW in sent_text and CLIENT["name"] in sent_text
    return needles


def report(log: str, found: dict[str, list[str]]) -> str:
    return "personal data in the DEBUG log:\n" + "\n".join(
        f"  {kind}: {needle!r}  ...{context(log, needle)}..." for kind, values in found.items() for needle in values[:3]
    )


@pytest.mark.parametrize("which", ["plain_flow", "encrypted_flow", "json_flow"])
def test_debug_logs_carry_no_personal_data(request: pytest.FixtureRequest, which: str) -> None:
    flow = request.getfixturevalue(which)
    log = flow["log"]
    if flow["format"] == "json":
        debug = any(r["level"] == "DEBUG" and r["logger"] == "engine" and r["message"].startswith("ingested")
                    for r in json_records(log))
    else:
        debug = "DEBUG engine: ingested" in log
    assert debug, "the engine did not log at DEBUG: the test would prove nothing"
    found = leaks(log, needles_for(flow))
    assert not found, report(log, found)


@pytest.mark.parametrize("which", ["plain_flow", "encrypted_flow"])
def test_no_logger_but_the_courier_sdk_logs_personal_data(request: pytest.FixtureRequest, which: str) -> None:
    """Everything the engine, Huey, httpx, httpcore, alembic, uvicorn... logged, the SDK's request dumps set aside
    (pinned above), is clean: the engine's own log lines name notifications, row ids and counts, never people."""
    flow = request.getfixturevalue(which)
    kept = records(flow["log"])
    loggers = {name for name, _ in kept}
    assert {"engine", "huey", "httpx"} <= loggers, sorted(loggers)
    log = "".join(text for name, text in kept if not name.startswith("courier."))
    found = leaks(log, needles_for(flow))
    assert not found, report(log, found)


def test_json_logs_are_one_object_per_line_with_ids_as_fields_and_nothing_else(json_flow: dict[str, Any]) -> None:
    from engine.logs import IDS

    records = json_records(json_flow["log"])
    allowed = {"time", "level", "logger", "message", "exception", "stack", *IDS}
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record) and set(record) <= allowed, record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
    assert {"engine", "huey", "httpx"} <= {r["logger"] for r in records}
    outcomes = [r for r in records if r.get("outcome") == "sent"]
    assert {(r["notification"], r["recipient_id"]) for r in outcomes} >= EXPECTED_SENDS
    assert all(isinstance(r["notification_id"], int) for r in outcomes)
    assert any(r.get("outcome") == "retrying" for r in records)  # the 503
    assert any(r.get("request_id") and r["message"].startswith("POST /events answered 202") for r in records)
    assert any(r["message"].startswith("listening on http://") for r in records)


def test_the_encrypted_store_holds_no_email_or_name_in_clear(encrypted_flow: dict[str, Any]) -> None:
    workdir = encrypted_flow["workdir"]
    files = sorted(p for p in workdir.iterdir() if p.name.startswith(("engine.db", "queue.db")))
    assert any(p.name == "engine.db" for p in files), files
    with sqlite3.connect(workdir / "engine.db") as db:
        assert db.execute("select count(*) from events").fetchone()[0] == 6
        assert db.execute("select count(*) from notifications where status = 'sent'").fetchone()[0] >= len(
            EXPECTED_SENDS
        )
        payloads = [row[0] for row in db.execute("select payload from events union all select profile from recipients")]
        assert payloads and all(p.startswith("fernet:") for p in payloads), "payloads are not encrypted"
    people = [CLIENT, PRACTITIONER, INVALID_PERSON]
    needles = {
        "email": {f for p in people for f in forms(p["email"])},
        "name": {f for p in people for f in forms(p["name"])},
        "phone": {f for p in people for f in phone_forms(p["phone"]) if len(f) > 8},
        "preview": forms(PREVIEW) | forms(PREVIEW_2),
    }
    for path in files:
        raw = path.read_bytes()
        found = {kind: sorted(n for n in values if n.encode("utf-8") in raw or n.encode("utf-16-le") in raw)
                 for kind, values in needles.items()}
        found = {k: v for k, v in found.items() if v}
        assert not found, f"{path.name} holds personal data in clear: {found}"
