"""Scale-out: PostgreSQL + Redis, two `engine serve` replicas and three `engine worker` processes.

Every send reaches Courier exactly once however the work is shared; the same event posted to
both replicas at once is accepted once; and a cancel racing a due reminder never lets the
cancelled one through: for every reminder, either the store says it was sent and Courier got
it once, or the store says it was cancelled and Courier never saw it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.reliability.test_crash import bookings, expected_keys, wait_for
from tests.support.courier_standin import CourierStandin
from tests.support.engine_process import Engine, copy_config, engine_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def post(port: int, body: dict) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/events", json=body, timeout=30)


def cancel_event(booking: dict, at: datetime) -> dict:
    d = booking["data"]
    return {
        "id": f"cancel_{d['booking']['id']}",
        "type": "booking.cancelled",
        "occurred_at": at.isoformat(),
        "data": {
            "booking": d["booking"],
            "cancelled_by": "client",
            "client": d["client"],
            "practitioner": d["practitioner"],
        },
    }


def test_two_hooks_three_workers_every_send_once_and_no_cancelled_send(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    copy_config(tmp_path)
    with CourierStandin(token="tok") as courier:
        courier.latency = 0.02
        env = engine_env(
            tmp_path, courier.url, ENGINE_DATABASE_URL=pg_url, ENGINE_QUEUE_URL=redis_url, ENGINE_WORKERS="3"
        )
        subprocess.run(
            [sys.executable, "-m", "engine.cli.main", "db", "upgrade"],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
        )
        hooks = [Engine(tmp_path, env, "serve") for _ in range(2)]
        for hook in hooks:
            hook.extra = ["--no-worker"]
        workers = [Engine(tmp_path, env, "worker") for _ in range(3)]
        processes = hooks + workers
        try:
            for p in processes:
                p.start()
            now = datetime.now(UTC)
            events = bookings(now, spread_s=6.0)
            # Every event goes to both replicas at once: each must be accepted exactly once.
            results: list[httpx.Response] = []

            def send_all(port: int) -> None:
                for i in range(0, len(events), 25):
                    results.append(post(port, {"events": events[i:i + 25]}))

            threads = [threading.Thread(target=send_all, args=(h.port,)) for h in hooks]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert all(r.status_code == 202 for r in results), [r.text for r in results if r.status_code != 202]
            accepted = [i for r in results for i in r.json()["accepted"]]
            assert sorted(accepted) == sorted(e["id"] for e in events)
            # Cancels race the reminders: every third booking is cancelled right at its reminder time.
            doomed = events[::3]
            for booking in doomed:
                due = datetime.fromisoformat(booking["data"]["booking"]["start_time"]) - timedelta(hours=24)
                time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                r = post(hooks[len(booking["id"]) % 2].port, cancel_event(booking, datetime.now(UTC)))
                assert r.status_code == 202, r.text
            keys = expected_keys(events) | {
                f"client_booking_cancelled:{b['data']['booking']['id']}" for b in doomed}  # keyed by booking
            reminder = {k for k in keys if "_reminder_24h:" in k}
            doomed_bookings = {b["data"]["booking"]["id"] for b in doomed}
            racing = {k for k in reminder if k.split(":")[1] in doomed_bookings}
            sends = wait_for(courier, keys - racing, 90)
            time.sleep(2)  # let any racing send that was let through arrive
            sends = courier.sends_by_key()
        finally:
            for p in processes:
                p.stop()
        assert {k: n for k, n in sends.items() if n != 1} == {}, "a send reached Courier twice"
        assert keys - racing <= set(sends), f"lost: {sorted((keys - racing) - set(sends))[:5]}"
        assert set(sends) <= keys
        db = create_engine(pg_url)
        with db.connect() as conn:
            rows = conn.execute(text("select idempotency_key, status from notifications where notification in "
                                     "('client_booking_reminder_24h', 'practitioner_session_reminder_24h')")).all()
        db.dispose()
        status = dict(rows)
        for key in racing:
            if status[key] == "cancelled":
                assert key not in sends, f"{key} was cancelled but reached Courier"
            else:
                assert status[key] == "sent" and sends.get(key) == 1, (key, status[key])
        cancelled = sum(1 for k in racing if status[k] == "cancelled")
        print(
            f"racing reminders: {len(racing)}, cancelled in time: {cancelled}, "
            f"sent before the cancel: {len(racing) - cancelled}"
        )
