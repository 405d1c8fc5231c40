"""examples/django, run as its README says: migrate, play a booking's life, relay to a real engine."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from tests.client.conftest import CLIENT_SRC, TOKEN, Hook
from tests.support.engine_process import ROOT

EXAMPLE = ROOT / "examples" / "django"


def manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_example_signals_reach_the_engine_as_catalog_events(hook: Hook, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "DJANGO_"))},
           "PYTHONPATH": str(CLIENT_SRC), "ESTUARY_DB": str(tmp_path / "estuary.db"),
           "ENGINE_URL": hook.url, "ENGINE_INGEST_TOKEN": TOKEN}
    manage("migrate", "--verbosity", "0", env=env)
    queued = [line.split() for line in manage("demo_booking", env=env).splitlines()]
    assert [kind for _, kind in queued] == [
        "user.registered",
        "user.registered",
        "booking.confirmed",
        "payment.succeeded",
        "message.sent",
        "booking.rescheduled",
        "booking.cancelled",
    ]
    assert manage("relay_events", "--once", env=env).strip() == "relayed 7 event(s), 0 refused"
    ids = [event_id for event_id, _ in queued]
    assert [i for i in hook.stored() if i in set(ids)] == ids
    with sqlite3.connect(tmp_path / "estuary.db") as db:
        assert db.execute("SELECT status, count(*) FROM engine_outbox GROUP BY status").fetchall() == [("sent", 7)]
        [envelope] = db.execute("SELECT envelope FROM engine_outbox WHERE event_type = 'message.sent'").fetchone()
    practitioner = json.loads(envelope)["data"]["recipient"]["id"]
    with sqlite3.connect(hook.workdir / "engine.db") as db:  # what the engine made of them
        made = {row[0] for row in db.execute("SELECT DISTINCT notification FROM notifications")}
    assert {"client_booking_confirmation", "client_payment_receipt", "client_booking_cancelled"} <= made
    # The message opened a New Message batch for the practitioner: it collects for its window, then goes out.
    upcoming = httpx.get(f"{hook.url}/notifications/upcoming", params={"within": "1h"},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
    assert upcoming.status_code == 200, upcoming.text
    batches = [row for row in upcoming.json()["upcoming"] if row["notification"] == "practitioner_new_message"
               and row["status"] == "collecting" and row["recipient_id"] == practitioner]
    assert [(b["digest_items"], [i["message"]["preview"] for i in b["data"]["items"]]) for b in batches] == [
        (1, ["See you then!"])], upcoming.text
