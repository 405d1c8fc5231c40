"""Courier faults an operator must not lose sends to: credentials Courier rejects (401), and a
status webhook that overtakes the commit of its send. Real stores (SQLite and PostgreSQL), the
Courier stand-in driven by the trycourier SDK, the real HTTP app, and a real `engine serve`
whose key Courier rejects, watched through /readyz and /metrics."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from engine.clock import utcnow
from engine.core.rendering import Delivery
from engine.delivery.courier import CourierBackend, Credentials
from engine.delivery.message import going_out
from engine.health import ALARMS, Readiness
from engine.http.app import build_app
from engine.metrics import REGISTRY
from engine.signing import sign_courier
from tests.runtime.support import (
    NOW,
    EngineProcess,
    LiveServer,
    Samples,
    booking_confirmed,
    engine_env,
    eventually,
    free_port,
    metric_samples,
    sample,
)
from tests.support.courier_standin import CourierStandin

WEBHOOK_SECRET = "webhook-secret"
PROBE_S = 0.3


@pytest.fixture(autouse=True)
def no_alarm_raised() -> Iterator[None]:
    ALARMS.set(Credentials.ALARM, True, "credentials accepted")  # one board per process: start and end clean
    yield
    ALARMS.set(Credentials.ALARM, True, "credentials accepted")


def courier_readiness(rt: Any, tmp_path: Path) -> Any:
    readiness = Readiness(rt.store.engine, f"sqlite:///{tmp_path}/queue.db")
    try:
        return readiness.check().get("courier")
    finally:
        readiness.close()


def confirmation(rt: Any) -> dict[str, Any]:
    [row] = rt.store.notifications(notification="client_booking_confirmation")
    return row


def scraped() -> Samples:
    return metric_samples(generate_latest(REGISTRY).decode())


def paused(samples: Samples, rt: Any) -> float:
    return sum(sample(samples, "engine_sends_paused_total", notification=n) for n in rt.config.notifications)


def alarm(samples: Samples) -> float:
    assert ("engine_courier_credentials_rejected", frozenset()) in samples  # shown at 0 too, not left out
    return sample(samples, "engine_courier_credentials_rejected")


def test_rejected_credentials_pause_delivery_consume_nothing_and_it_resumes_once_accepted(
    db_url: str, make_runtime: Any, standin: CourierStandin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = CourierBackend("a-rotated-key", standin.url, timeout=2, credentials=Credentials(PROBE_S))
    # One attempt: had a 401 counted as one, the second would fail the send for good.
    rt = make_runtime(db_url, backend=backend, max_attempts=1)
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    caplog.set_level(logging.WARNING, logger="engine")
    before = scraped()
    assert alarm(before) == 0

    rt.sweep(NOW)
    row = confirmation(rt)
    assert (row["status"], row["attempts"]) == ("scheduled", 0)
    assert row["reason"].startswith("paused: Courier rejected the credentials (HTTP 401")
    check = courier_readiness(rt, tmp_path)
    assert not check.ok and check.detail.startswith("credentials rejected (HTTP 401")
    during = scraped()
    assert alarm(during) == 1
    put_back = [r for r in rt.store.notifications(limit=100) if (r["reason"] or "").startswith("paused:")]
    assert put_back and paused(during, rt) - paused(before, rt) == len(put_back)
    assert sample(during, "engine_sends_total", notification="client_booking_confirmation", outcome="failed") == \
        sample(before, "engine_sends_total", notification="client_booking_confirmation", outcome="failed")
    unauthorized = [e for e in standin.log if e["outcome"] == "unauthorized"]

    # Until the next probe, sends are put back without a request: one 401 per probe, not per send.
    rt.sweep(NOW + timedelta(seconds=PROBE_S / 3))
    assert len([e for e in standin.log if e["outcome"] == "unauthorized"]) == len(unauthorized)
    time.sleep(PROBE_S)
    rt.sweep(NOW + timedelta(minutes=1))  # the probe: still rejected
    assert len([e for e in standin.log if e["outcome"] == "unauthorized"]) > len(unauthorized)
    assert (confirmation(rt)["status"], confirmation(rt)["attempts"]) == ("scheduled", 0)
    assert not [r for r in rt.store.notifications(limit=100) if r["status"] == "failed"]

    standin.token = "a-rotated-key"  # the key is valid again (Courier accepts it)
    time.sleep(PROBE_S)
    rt.sweep(NOW + timedelta(minutes=2))
    row = confirmation(rt)
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert courier_readiness(rt, tmp_path) is None  # cleared: no longer a check that fails
    assert alarm(scraped()) == 0
    assert [r["idempotency_key"] for r in standin.requests].count(row["idempotency_key"]) == 1
    rejected = [r for r in caplog.records if "credentials rejected" in r.getMessage() and r.name == "engine.delivery"]
    assert len(rejected) == 1  # logged once, not per send or per probe
    assert any("credentials accepted again" in r.getMessage() for r in caplog.records)


def test_readyz_names_rejected_courier_credentials(make_runtime: Any, standin: CourierStandin, tmp_path: Path) -> None:
    backend = CourierBackend("wrong", standin.url, timeout=2, credentials=Credentials(PROBE_S))
    rt = make_runtime(f"sqlite:///{tmp_path}/engine.db", backend=backend)
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    rt.sweep(NOW)
    with LiveServer(build_app(rt)) as server:
        answer = httpx.get(f"{server.url}/readyz", timeout=10)
    assert answer.status_code == 503 and "courier" in answer.json()["failing"]
    assert answer.json()["checks"]["courier"]["detail"].startswith("credentials rejected")


def test_a_served_engine_with_a_rejected_key_shows_the_alarm_on_readyz_and_metrics(
        project: Path, tmp_path: Path, standin: CourierStandin) -> None:
    """A real `engine serve` whose key Courier rejects: its own /metrics shows the alarm at 1 and
    counts the paused sends, /readyz fails naming Courier, and no send is failed or spent."""
    env = engine_env(ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'engine.db'}",
                     ENGINE_QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}", COURIER_AUTH_TOKEN="a-revoked-key",
                     COURIER_BASE_URL=standin.url, COURIER_TIMEOUT="2", ENGINE_SWEEP_INTERVAL="0.1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = EngineProcess(["serve", "--port", str(port)], project, env, tmp_path / "serve.log")
    try:
        eventually(lambda: _answers(url + "/healthz", serve), within=30, what="engine serve answering")
        assert alarm(metric_samples(httpx.get(url + "/metrics", timeout=10).text)) == 0
        now = utcnow()
        event = booking_confirmed("evt_1", "bk_1", now + timedelta(days=3), now)
        assert httpx.post(url + "/events", json=event, timeout=10).status_code == 202
        eventually(lambda: alarm(metric_samples(httpx.get(url + "/metrics", timeout=10).text)) == 1, within=20,
                   what="the credentials alarm on /metrics")
        samples = metric_samples(httpx.get(url + "/metrics", timeout=10).text)
        assert sample(samples, "engine_sends_paused_total", notification="client_booking_confirmation") >= 1
        assert sum(v for (name, labels), v in samples.items() if name == "engine_sends_total") == 0
        ready = httpx.get(url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["failing"] == ["courier"], ready.text
        rows = httpx.get(url + "/notifications", timeout=10).json()["notifications"]
        assert rows and all(r["status"] not in ("sent", "failed") and r["attempts"] == 0 for r in rows), rows
    finally:
        serve.stop()


def _answers(url: str, proc: EngineProcess) -> bool:
    assert proc.alive(), proc.output()[-3000:]
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- a status webhook that overtakes its send -------------------------------------------------------------
def webhook(url: str, message_id: str, status: str) -> httpx.Response:
    raw = json.dumps({"type": "message:updated", "data": {"id": message_id, "status": status}}).encode()
    return httpx.post(
        f"{url}/webhooks/courier",
        content=raw,
        timeout=10,
        headers={
            "courier-signature": sign_courier(WEBHOOK_SECRET, raw, int(time.time() * 1000)),
            "content-type": "application/json",
        },
    )


def test_a_webhook_that_overtakes_its_send_is_applied_when_the_send_commits(
        db_url: str, make_runtime: Any, standin: CourierStandin) -> None:
    backend = CourierBackend(standin.token, standin.url, timeout=2)
    rt = make_runtime(db_url, backend=backend, webhook_secret=WEBHOOK_SECRET)
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    [row_id] = rt.store.queue_due(NOW, ids=[confirmation(rt)["id"]])
    claimed = rt.store.claim(row_id, NOW)
    message = going_out(claimed.message, Delivery(claimed.channels), NOW)
    outcome = backend.send(message, claimed.idempotency_key)  # Courier has it; the engine has not written it yet
    with LiveServer(build_app(rt)) as server:
        for status in ("OPENED", "DELIVERED"):  # out of order, as Courier may send them
            answer = webhook(server.url, outcome.request_id, status)
            assert answer.status_code == 202 and answer.json()["result"] == "pending"
        assert confirmation(rt)["delivery_status"] is None
        assert rt.store.finish(claimed, "sent", NOW, request_id=outcome.request_id) == "sent"
        row = confirmation(rt)
        assert row["delivery_status"] == "opened"
        assert [h["status"] for h in rt.store.history(row_id)][-2:] == ["delivered", "opened"]
        time.sleep(0.002)  # signed anew
        assert webhook(server.url, outcome.request_id, "DELIVERED").json() == {"result": "duplicate"}


def test_early_statuses_expire_after_a_day(db_url: str, make_runtime: Any) -> None:
    rt = make_runtime(db_url)
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    assert rt.store.record_delivery("outbox-late", "delivered", NOW - timedelta(hours=25)) == "pending"
    assert rt.store.record_delivery("never-sent", "delivered", NOW) == "pending"  # drops the day-old one
    [row_id] = rt.store.queue_due(NOW, ids=[confirmation(rt)["id"]])
    rt.store.finish(rt.store.claim(row_id, NOW), "sent", NOW, request_id="outbox-late")
    assert confirmation(rt)["delivery_status"] is None


def test_a_webhook_racing_the_commit_of_its_send_is_never_lost(db_url: str, make_runtime: Any) -> None:
    rt = make_runtime(db_url)
    for i in range(12):
        rt.emit(booking_confirmed(f"evt_{i}", f"bk_{i}", NOW + timedelta(days=3), NOW), now=NOW)
    rows = rt.store.notifications(notification="client_booking_confirmation", limit=100)
    claims = [rt.store.claim(i, NOW) for i in rt.store.queue_due(NOW, ids=[r["id"] for r in rows])]
    for claimed in claims:
        request_id = f"req-{claimed.id}"
        barrier = threading.Barrier(2)

        def finish(c: Any = claimed, r: str = request_id, b: threading.Barrier = barrier) -> None:
            b.wait(5)
            rt.store.finish(c, "sent", NOW, request_id=r)

        def status(r: str = request_id, b: threading.Barrier = barrier) -> None:
            b.wait(5)
            rt.store.record_delivery(r, "delivered", NOW)

        threads = [threading.Thread(target=finish), threading.Thread(target=status)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    eventually(lambda: all(r["delivery_status"] == "delivered" for r in rt.store.notifications(
        notification="client_booking_confirmation", limit=100)), within=5, what="every status applied")
