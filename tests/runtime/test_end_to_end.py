"""End to end with real processes: `engine serve` (and `engine worker`) with a real Huey consumer,
delivering to the Courier stand-in. One test body, two deployments:

* embedded: `engine serve` alone on its defaults (SQLite store and SQLite-backed Huey in the
  working directory);
* at scale: PostgreSQL + Redis, `engine serve` plus an `engine worker` process: two consumers
  and two sweeps racing for the same rows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.queue import make_huey
from engine.store.db import connect
from engine.store.repository import Store
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import EngineProcess, booking_cancelled, booking_confirmed, engine_env, eventually, free_port

INGEST_TOKEN = "e2e-ingest-token"


class Deployment:
    def __init__(self, url: str, database_url: str, processes: list[EngineProcess], queue_url: str):
        self.url = url
        self.database_url = database_url
        self.processes = processes
        self.queue_url = queue_url
        self.engine = connect(database_url)
        self.store = Store(self.engine)

    def logs(self) -> str:
        return "\n".join(f"--- {p.proc.args[3:]} ---\n{p.output()[-4000:]}" for p in self.processes)


def start(project: Path, tmp_path: Path, env: dict[str, str], commands: list[list[str]], database_url: str,
          queue_url: str) -> Iterator[Deployment]:
    port = free_port()
    processes = []
    for i, args in enumerate(commands):
        args = [*args, "--port", str(port)] if args[0] == "serve" else args
        processes.append(EngineProcess(args, project, env, tmp_path / f"engine-{i}.log"))
    deployment = Deployment(f"http://127.0.0.1:{port}", database_url, processes, queue_url)
    try:
        def up() -> bool:
            for p in processes:
                assert p.alive(), f"an engine process exited early:\n{deployment.logs()}"
            try:
                return httpx.get(deployment.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(up, within=60, every=0.1, what="engine serve answering /healthz")
        yield deployment
    finally:
        codes = [p.stop() for p in processes]
        deployment.engine.dispose()
        assert codes == [0] * len(codes), f"engine processes did not stop cleanly: {codes}\n{deployment.logs()}"


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def deployment(
    request: pytest.FixtureRequest, project: Path, tmp_path: Path, standin: CourierStandin
) -> Iterator[Deployment]:
    env = engine_env(COURIER_AUTH_TOKEN=COURIER_TOKEN, COURIER_BASE_URL=standin.url, ENGINE_INGEST_TOKEN=INGEST_TOKEN,
                     COURIER_TIMEOUT="5")
    if request.param == "sqlite":
        yield from start(project, tmp_path, env, [["serve"]], f"sqlite:///{project / 'engine-data' / 'engine.db'}",
                         f"sqlite:///{project / 'engine-data' / 'queue.db'}")
        return
    pg_url, redis_url = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")
    env.update(ENGINE_DATABASE_URL=pg_url, ENGINE_QUEUE_URL=redis_url, ENGINE_WORKERS="2")
    yield from start(project, tmp_path, env, [["serve"], ["worker", "--no-periodic"]], pg_url, redis_url)


def test_confirmation_at_once_reminder_on_time_cancelled_reminder_never(
    deployment: Deployment, standin: CourierStandin
) -> None:
    with httpx.Client(base_url=deployment.url, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}, timeout=10) as http:
        post_bookings(http, standin, deployment)


def post_bookings(http: httpx.Client, standin: CourierStandin, deployment: Deployment) -> None:
    now = datetime.now(UTC)
    t0 = time.monotonic()
    start_time = (now + timedelta(hours=24, seconds=3)).replace(microsecond=0) + timedelta(seconds=1)
    reminder_due = t0 + (start_time - timedelta(hours=24) - now).total_seconds()
    keep = booking_confirmed("evt_keep", "bk_keep", start_time, now, client="usr_c_keep", practitioner="usr_p_keep")
    drop = booking_confirmed("evt_drop", "bk_drop", start_time, now, client="usr_c_drop", practitioner="usr_p_drop")
    cancel = booking_cancelled(
        "evt_drop_cancel", "bk_drop", start_time, now, client="usr_c_drop", practitioner="usr_p_drop"
    )
    for body in (keep, drop, cancel):
        r = http.post("/events", json=body)
        assert r.status_code == 202 and r.json()["accepted"] == [body["id"]], r.text

    def sent(template: str, booking: str) -> list[dict[str, Any]]:
        return [r for r in standin.requests if r["body"]["message"]["template"] == template
                and r["body"]["message"]["data"].get("booking_id") == booking]

    at_once = [("CLIENT_BOOKING_CONFIRMATION_V1", "bk_keep"), ("PRACTITIONER_BOOKING_NOTIFICATION_V1", "bk_keep"),
               ("CLIENT_BOOKING_CONFIRMATION_V1", "bk_drop"), ("PRACTITIONER_BOOKING_NOTIFICATION_V1", "bk_drop"),
               ("CLIENT_BOOKING_CANCELLED_V1", "bk_drop")]
    eventually(lambda: all(sent(*w) for w in at_once), within=15, what=f"the immediate sends\n{deployment.logs()}")
    assert not sent("CLIENT_BOOKING_REMINDER_24H_V1", "bk_keep"), "a reminder went out before its time"

    reminders = [("CLIENT_BOOKING_REMINDER_24H_V1", "bk_keep"), ("PRACTITIONER_SESSION_REMINDER_24H_V1", "bk_keep")]
    eventually(lambda: all(sent(*w) for w in reminders), within=20, what=f"the 24 h reminders\n{deployment.logs()}")
    for w in reminders:
        assert sent(*w)[0]["at"] >= reminder_due - 0.05, "a reminder went out early"
    time.sleep(1.0)  # room for a duplicate or for the cancelled booking's reminder to (wrongly) show up

    assert not sent("CLIENT_BOOKING_REMINDER_24H_V1", "bk_drop")
    assert not sent("PRACTITIONER_SESSION_REMINDER_24H_V1", "bk_drop")
    counts = Counter(
        (r["body"]["message"]["template"], r["body"]["message"]["data"].get("booking_id")) for r in standin.requests
    )
    assert counts == Counter(at_once + reminders), counts
    assert all(r["headers"].get("idempotency-key") for r in standin.requests)
    assert all(n == 1 for n in standin.sends_by_key().values()) and standin.replays == []

    rows = {(r["notification"], r["key"] or r["event_id"]): r for r in deployment.store.notifications(limit=100)}
    for rule in ("client_booking_reminder_24h", "practitioner_session_reminder_24h"):
        assert rows[(rule, "bk_keep")]["status"] == "sent"
        assert rows[(rule, "bk_drop")]["status"] == "cancelled"
        assert rows[(rule, "bk_drop")]["reason"] == "cancelled by booking.cancelled"
    queue = make_huey(deployment.queue_url)
    assert queue.pending_count() == 0
    assert queue.storage.result_store_size() == 0, "task results pile up in the queue: nobody reads them"
    by_key = {r["idempotency_key"]: r for r in standin.requests}
    for row in deployment.store.notifications(status=["sent"], limit=100):
        assert by_key[row["idempotency_key"]]["request_id"] == row["request_id"]
        assert row["sent_at"] >= row["send_at"] - timedelta(seconds=1)


# -- recovery: the database is the source of truth, the queue only a messenger ------------------------
@pytest.fixture(params=["sqlite", "postgresql+redis"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), f"sqlite:///{tmp_path / 'queue.db'}"
    return request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")


def test_a_worker_recovers_lost_tasks_and_dead_claims_without_sending_twice(
    backends: tuple[str, str], make_runtime: Any, standin: CourierStandin
) -> None:
    from engine.core.rendering import Delivery
    from engine.delivery import CourierBackend
    from engine.delivery.message import going_out
    from engine.queue import start_worker

    from .support import message_sent, unbatched

    database_url, queue_url = backends
    rt = unbatched(make_runtime(database_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2)))
    then = datetime.now(UTC) - timedelta(minutes=5)
    rt.emit(message_sent("evt_lost", "msg_1", "conv_1", then, to="usr_c_lost"), now=then)
    rt.emit(message_sent("evt_dead", "msg_2", "conv_2", then, to="usr_c_dead"), now=then)
    # Four minutes ago both were handed to a queue that lost them; a worker claimed one, sent it
    # to Courier, and died before recording the answer.
    assert len(rt.store.queue_due(then + timedelta(minutes=1))) == 2
    dead = next(r for r in rt.store.notifications() if r["event_id"] == "evt_dead")
    claimed = rt.store.claim(dead["id"], then + timedelta(minutes=1))
    first = rt.backend.send(going_out(claimed.message, Delivery(claimed.channels), then), claimed.idempotency_key)
    assert first.status == "sent"

    consumer, stop = start_worker(rt, make_huey(queue_url, rt), workers=2)
    try:
        eventually(
            lambda: {r["status"] for r in rt.store.notifications()} == {"sent"}, within=20, what="recovery of both rows"
        )
    finally:
        stop.set()
        consumer.stop(graceful=True)
    rows = {r["event_id"]: r for r in rt.store.notifications()}
    assert rows["evt_dead"]["attempts"] == 2 and rows["evt_dead"]["request_id"] == first.request_id
    assert standin.sends_by_key() == {rows["evt_lost"]["idempotency_key"]: 1, rows["evt_dead"]["idempotency_key"]: 1}
    assert [r["idempotency_key"] for r in standin.replays] == [rows["evt_dead"]["idempotency_key"]]
