"""A store that fails a request (database unreachable, a SQLite file that cannot be written) gets a
503 with `Retry-After` on every route that touches it, never a 500 with a traceback: counted in
`engine_http_requests_total` (and a Courier webhook as outcome `error`), logged once when the
failures start and once when the store answers again."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from engine.http.app import build_app
from engine.metrics import REGISTRY
from engine.signing import make_unsubscribe_token, sign_courier

from .support import LiveServer, iso, metric_samples, person, sample

INGEST_TOKEN = "store-down-token"
WEBHOOK_SECRET = "store-down-webhook-secret"
SECRET_KEY = "store-down-unsubscribe-secret"
AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}
FAILING = "requests to the store failing"


def registered(eid: str, user: str) -> dict[str, Any]:
    return {"id": eid, "type": "user.registered", "occurred_at": iso(datetime.now(UTC)),
            "data": {"user": person(user, role="client"), "verification_url": f"https://estuary.app/verify?t={eid}"}}


def courier_status(message_id: str, status: str) -> bytes:
    return json.dumps({"type": "message:updated", "data": {"id": message_id, "status": status}}).encode()


def signed_webhook(client: httpx.Client, body: bytes) -> httpx.Response:
    time.sleep(0.002)  # each request signed at its own millisecond: a repeated signature is a replay
    signature = sign_courier(WEBHOOK_SECRET, body, int(time.time() * 1000))
    return client.post("/webhooks/courier", content=body,
                       headers={"content-type": "application/json", "courier-signature": signature})


def counted(route: str, status: str) -> float:
    return sample(metric_samples(generate_latest(REGISTRY).decode()), "engine_http_requests_total",
                  route=route, status=status)


def webhooks_counted(outcome: str) -> float:
    return sample(metric_samples(generate_latest(REGISTRY).decode()), "engine_webhooks_total", outcome=outcome)


def assert_store_down(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["error"] == "the store is unavailable; nothing was accepted, try again"


def store_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "engine.http"]


# -- a Courier webhook while the SQLite files cannot be written --------------------------------------
def _chattr(flag: str, paths: list[Path]) -> bool:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0


@pytest.fixture
def read_only(sqlite_url: str) -> Iterator[Callable[[bool], None]]:
    """`read_only(True)` makes the database's files immutable (writes fail as on a read-only disk);
    `read_only(False)` makes them writable again. Not the `-shm` file: SQLite maps it in memory, and
    an immutable one kills the process with SIGBUS (engine/health.py)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    folder = Path(sqlite_url.removeprefix("sqlite:///")).parent
    frozen: list[Path] = []

    def switch(on: bool) -> None:
        nonlocal frozen
        if on:
            frozen = [p for p in folder.iterdir()
                      if p.name.startswith("engine.db") and not p.name.endswith("-shm")]
            if not _chattr("+i", frozen):
                pytest.skip("chattr +i is not permitted here (needs root and a file system that supports it)")
        else:
            _chattr("-i", frozen)
            frozen = []

    yield switch
    _chattr("-i", frozen)


def test_a_courier_webhook_while_the_database_is_read_only_is_a_503_counted_as_an_error(
        make_runtime: Any, sqlite_url: str, read_only: Callable[[bool], None],
        caplog: pytest.LogCaptureFixture) -> None:
    rt = make_runtime(sqlite_url, webhook_secret=WEBHOOK_SECRET)
    now = datetime.now(UTC)
    rt.emit(registered("evt_ro", "usr_ro"), now=now)
    row_id = rt.store.queue_due(now, limit=1)[0]
    rt.store.finish(rt.store.claim(row_id, now), "sent", now, request_id="req-ro")
    errors, answered_503 = webhooks_counted("error"), counted("webhooks", "503")
    with caplog.at_level(logging.INFO, logger="engine.http"), LiveServer(build_app(rt)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        read_only(True)
        for _ in range(3):
            assert_store_down(signed_webhook(client, courier_status("req-ro", "DELIVERED")))
        assert rt.store.status(row_id) == "sent"  # nothing changed
        read_only(False)
        applied = signed_webhook(client, courier_status("req-ro", "DELIVERED"))
    assert applied.status_code == 200 and applied.json()["result"] == "applied", applied.text
    assert webhooks_counted("error") - errors == 3
    assert counted("webhooks", "503") - answered_503 == 3
    lines = store_log(caplog)
    failing = [line for line in lines if line.startswith(FAILING)]
    assert len(failing) == 1 and failing[0].endswith("(1 time)"), lines  # once, not once per request
    assert "requests to the store recovered after 3 failures" in lines, lines
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


# -- every route that touches the store, with a store that cannot be reached -------------------------
def _unsubscribe(client: httpx.Client) -> httpx.Response:
    token = make_unsubscribe_token(SECRET_KEY, "usr_1", "client_welcome", datetime.now(UTC))
    return client.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"})


def _event() -> dict[str, Any]:
    return registered("evt_down", "usr_down")


ROUTES: list[tuple[str, str, str, Callable[[httpx.Client], httpx.Response]]] = [
    ("events", "post", "/events", lambda c: c.post("/events", json=_event(), headers=AUTH)),
    ("webhooks", "post", "/webhooks/courier", lambda c: signed_webhook(c, courier_status("req-1", "DELIVERED"))),
    ("preferences", "get", "/recipients/{recipient_id}/preferences",
     lambda c: c.get("/recipients/usr_1/preferences", headers=AUTH)),
    ("preferences", "put", "/recipients/{recipient_id}/preferences",
     lambda c: c.put("/recipients/usr_1/preferences", json={"preferences": {"client_welcome": False}}, headers=AUTH)),
    ("unsubscribe", "post", "/unsubscribe", _unsubscribe),
    ("notifications", "get", "/notifications", lambda c: c.get("/notifications", headers=AUTH)),
    ("upcoming", "get", "/notifications/upcoming", lambda c: c.get("/notifications/upcoming", headers=AUTH)),
]


@pytest.mark.parametrize("broken", ["sqlite-directory", "postgres-closed-port"])
def test_every_route_answers_503_with_retry_after_when_the_store_cannot_be_reached(
        make_runtime: Any, sqlite_url: str, tmp_path: Path, broken: str, caplog: pytest.LogCaptureFixture) -> None:
    from engine.store.db import connect
    from engine.store.repository import Store

    rt = make_runtime(sqlite_url, ingest_token=INGEST_TOKEN, webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY)
    url = (f"sqlite:///{tmp_path}" if broken == "sqlite-directory"  # a directory where the file should be
           else "postgresql+psycopg://postgres@127.0.0.1:1/test")  # nothing listens on port 1
    rt.store = Store(connect(url))
    with caplog.at_level(logging.INFO, logger="engine.http"), LiveServer(build_app(rt)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for route, _, _, call in ROUTES:
            before = counted(route, "503")
            assert_store_down(call(client))
            assert counted(route, "503") - before == 1, route
        document = client.get("/openapi.json").json()  # a route that reads nothing still answers
    for _, method, path, _ in ROUTES:  # and the document says so, with Retry-After
        assert "Retry-After" in document["paths"][path][method]["responses"]["503"]["headers"], (method, path)
    failing = [line for line in store_log(caplog) if line.startswith(FAILING)]
    assert len(failing) == 1, failing
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


def test_a_read_whose_connection_is_lost_drops_it_without_a_traceback(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The server ends the connection in the middle of a read: the read fails with the store's
    error, the pool drops that connection (no reset attempted on it, which would log a traceback
    per lost connection), and the next read gets a fresh one."""
    from sqlalchemy.exc import OperationalError

    from engine.store.db import connect, upgrade
    from engine.store.repository import Store

    engine = connect(pg_url)
    upgrade(engine)
    store = Store(engine)

    def killed(cur: Any) -> None:
        cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    try:
        with caplog.at_level(logging.DEBUG, logger="sqlalchemy.pool"), pytest.raises(OperationalError):
            store._read(killed)
        tracebacks = [r for r in caplog.records if r.name.startswith("sqlalchemy.pool") and r.levelno >= logging.ERROR]
        assert tracebacks == [], [r.getMessage() for r in tracebacks]
        assert store._read(lambda cur: cur.execute("SELECT 1").fetchone()) == (1,)
    finally:
        engine.dispose()
