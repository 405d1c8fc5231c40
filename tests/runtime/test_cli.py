"""The runtime commands: db upgrade, upcoming, send-test, stats, recipients import.

Most run in-process through `engine.cli.main.main` (the console script's own function) with the
environment set as an operator would; `engine db upgrade` also runs as a real subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from engine.store.db import connect
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import booking_confirmed, engine_env, payment_succeeded, person


def test_db_upgrade_as_a_real_command(project: Path, cli: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli.main", "db", "upgrade"], cwd=project, env=engine_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "database is up to date"
    assert cli("db", "upgrade") == (0, "database is up to date\n", "")  # again, on the embedded default: idempotent
    engine = connect(f"sqlite:///{project / 'engine-data' / 'engine.db'}")
    assert {"notifications", "events", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.postgres
def test_db_upgrade_on_postgres(cli: Any, pg_url: str) -> None:
    assert cli("db", "upgrade", ENGINE_DATABASE_URL=pg_url)[0] == 0
    assert cli("db", "upgrade", ENGINE_DATABASE_URL=pg_url)[:2] == (0, "database is up to date\n")
    engine = connect(pg_url)
    assert {"notifications", "events", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_upcoming_lists_rendered_sends_and_sends_nothing(
    cli: Any, project: Path, make_runtime: Any, standin: CourierStandin
) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    rt = make_runtime(url)
    now = datetime.now(UTC)
    rt.emit(booking_confirmed("evt_1", "bk_1", now + timedelta(hours=20), now), now=now)
    env = {"ENGINE_DATABASE_URL": url, "COURIER_AUTH_TOKEN": COURIER_TOKEN, "COURIER_BASE_URL": standin.url}
    code, out, _ = cli("upcoming", "--format", "json", "--within", "24h", **env)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(x["notification"] for x in lines) == [
        "client_booking_confirmation",
        "client_booking_reminder_30m",
        "practitioner_booking_notification",
        "practitioner_session_reminder_30m",
    ]
    reminder = next(x for x in lines if x["notification"] == "client_booking_reminder_30m")
    assert reminder["recipient"] == "usr_c_1" and reminder["channels"] == ["email"]
    assert reminder["template"] == "CLIENT_BOOKING_REMINDER_30M_V1" and reminder["status"] == "scheduled"
    assert reminder["send_at"].endswith("Z")
    assert datetime.fromisoformat(reminder["send_at"].replace("Z", "+00:00")) == now + timedelta(hours=20) - timedelta(
        minutes=30
    )
    assert reminder["data"]["booking_id"] == "bk_1" and reminder["data"]["practitioner_name"] == "Jonas Weber"
    assert reminder["idempotency_key"].startswith("client_booking_reminder_30m:bk_1:")
    code, out, _ = cli("upcoming", "--format", "json", "--within", "1h", **env)
    assert sorted(json.loads(x)["notification"] for x in out.splitlines()) == [
        "client_booking_confirmation",
        "practitioner_booking_notification",
    ]
    code, out, _ = cli("upcoming", COLUMNS="250", **env)
    assert code == 0 and "client_booking_reminder_30m" in out
    assert cli("upcoming", "--within", "soon", **env)[0] == 2
    assert standin.requests == []
    assert {r["status"] for r in rt.store.notifications()} == {"scheduled", "skipped"}


def test_upcoming_shows_what_the_rules_in_force_will_send(cli: Any, project: Path, make_runtime: Any) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    rt = make_runtime(url)
    now = datetime.now(UTC)
    rt.emit(booking_confirmed("evt_1", "bk_1", now + timedelta(hours=20), now), now=now)
    rt.emit(payment_succeeded("evt_2", "pay_1", now, practitioner_amount=7000), now=now)  # into the weekly digest
    rt.emit(payment_succeeded("evt_3", "pay_2", now, practitioner_amount=5000), now=now)
    # A deploy: the client's 30-minute reminder paused, a new template for the practitioner's.
    text = (project / "rules" / "client.yaml").read_text()
    marker = "  client_booking_reminder_30m:\n"
    assert marker in text
    (project / "rules" / "client.yaml").write_text(text.replace(marker, marker + "    enabled: false\n", 1))
    templates = project / "templates_map" / "production.yaml"
    templates.write_text(
        templates.read_text().replace("PRACTITIONER_SESSION_REMINDER_30M_V1", "PRACTITIONER_SESSION_REMINDER_30M_V2")
    )
    code, out, err = cli("upcoming", "--format", "json", "--within", "8d", ENGINE_DATABASE_URL=url)
    assert code == 0, err
    found = {x["notification"]: x for x in map(json.loads, out.splitlines())}
    assert found["client_booking_reminder_30m"]["will_skip"] == "paused"
    assert found["practitioner_session_reminder_30m"]["template"] == "PRACTITIONER_SESSION_REMINDER_30M_V2"
    assert found["practitioner_session_reminder_30m"]["will_skip"] is None
    digest = found["practitioner_weekly_earnings_summary"]
    assert (digest["status"], digest["digest_items"], digest["recipient"]) == ("collecting", 2, "usr_p_1")
    assert digest["id"] is None and digest["template"]
    code, out, _ = cli("upcoming", "--within", "8d", COLUMNS="250", ENGINE_DATABASE_URL=url)
    assert "will be skipped: paused" in out and "2 item(s) so far" in out


def test_send_test_of_a_digest_builds_one_from_the_example(cli: Any, project: Path, standin: CourierStandin) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    code, out, err = cli("send-test", "--type", "practitioner_weekly_earnings_summary", "--to", "p@example.com",
                         ENGINE_DATABASE_URL=url, COURIER_AUTH_TOKEN=COURIER_TOKEN, COURIER_BASE_URL=standin.url)
    assert (code, out.strip()) == (0, "practitioner_weekly_earnings_summary: sent (via courier)"), err
    [request] = standin.requests
    assert request["body"]["message"]["to"]["email"] == "p@example.com"


def test_send_test_goes_to_courier(cli: Any, project: Path, make_runtime: Any, standin: CourierStandin) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    code, out, err = cli("send-test", "--type", "client_welcome", "--to", "x@example.com", ENGINE_DATABASE_URL=url,
                         COURIER_AUTH_TOKEN=COURIER_TOKEN, COURIER_BASE_URL=standin.url)
    assert (code, out.strip()) == (0, "client_welcome: sent (via courier)"), err
    [request] = standin.requests
    message = request["body"]["message"]
    assert message["to"]["email"] == "x@example.com" and message["template"] == "CLIENT_WELCOME_V1"
    assert message["data"]["verification_url"].startswith("https://")  # the rule's example data
    row = make_runtime(url).store.notifications(notification="client_welcome")[0]
    assert request["headers"]["idempotency-key"] == row["idempotency_key"]
    assert (row["status"], row["request_id"]) == ("sent", request["request_id"])


def test_send_test_without_a_token_goes_to_the_outbox(
    cli: Any, project: Path, make_runtime: Any, standin: CourierStandin
) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    rt = make_runtime(url)
    rt.store.import_recipients([person("usr_known")], datetime.now(UTC))
    code, out, _ = cli("send-test", "--type", "practitioner_welcome", "--user-id", "usr_known", ENGINE_DATABASE_URL=url)
    assert (code, out.strip()) == (0, "practitioner_welcome: sent (via outbox)")
    [row] = rt.store.notifications(notification="practitioner_welcome")
    assert row["recipient_id"] == "usr_known" and row["request_id"].startswith("outbox-")
    assert standin.requests == []
    code, _, err = cli("send-test", "--type", "client_welcome", "--user-id", "usr_nobody", ENGINE_DATABASE_URL=url)
    assert (code, err) == (
        1,
        "error: unknown recipient 'usr_nobody': it has not appeared in an event nor been imported\n",
    )
    assert cli("send-test", "--type", "no_such_rule", "--to", "x@example.com", ENGINE_DATABASE_URL=url)[0] == 2
    assert cli("send-test", "--type", "client_welcome", ENGINE_DATABASE_URL=url)[0] == 2  # neither --to nor --user-id


def test_stats_json(cli: Any, project: Path, make_runtime: Any) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    rt = make_runtime(url)
    now = datetime.now(UTC)
    for i in range(3):
        rt.send_now("client_welcome", person(f"usr_{i}"), example=True, now=now)
    rows = rt.store.notifications(notification="client_welcome")
    rt.store.record_delivery(rows[0]["request_id"], "delivered", now)
    rt.store.record_delivery(rows[1]["request_id"], "opened", now)  # opened implies delivered
    rt.emit(booking_confirmed("evt_1", "bk_1", now + timedelta(days=3), now), now=now)
    code, out, _ = cli("stats", "--format", "json", ENGINE_DATABASE_URL=url)
    assert code == 0
    summary = {s["notification"]: s for s in json.loads(out)}
    welcome = summary["client_welcome"]
    assert (welcome["sent"], welcome["delivered"], welcome["opened"]) == (3, 1, 1)
    assert welcome["delivery_rate"] == round(2 / 3, 4)
    assert welcome["failure_rate"] == 0.0
    assert summary["client_booking_reminder_24h"]["scheduled"] == 1
    assert summary["client_booking_reminder_24h"]["delivery_rate"] is None
    code, out, _ = cli("stats", COLUMNS="250", ENGINE_DATABASE_URL=url)
    assert code == 0 and "client_welcome" in out
    assert cli("stats", "--since", "a while", ENGINE_DATABASE_URL=url)[0] == 2


def test_recipients_import(cli: Any, project: Path, tmp_path: Path, make_runtime: Any) -> None:
    url = f"sqlite:///{project / 'engine-data' / 'engine.db'}"
    good = tmp_path / "people.jsonl"
    good.write_text("\n".join(json.dumps(person(f"usr_{i}")) for i in range(3)) + "\n\n")
    code, out, _ = cli("recipients", "import", str(good), ENGINE_DATABASE_URL=url)
    assert (code, out.strip()) == (0, "imported 3 recipient(s)")
    store = make_runtime(url).store
    assert store.recipient("usr_1")["email"] == "usr_1@example.com"

    as_list = tmp_path / "people.json"
    as_list.write_text(json.dumps([{**person("usr_1"), "name": "Renamed"}, person("usr_9")]))
    assert cli("recipients", "import", str(as_list), ENGINE_DATABASE_URL=url)[0] == 0
    assert store.recipient("usr_1")["name"] == "Renamed" and store.recipient("usr_9") is not None

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(person("usr_new"))
        + "\n"
        + json.dumps({"id": "usr_noemail", "name": "X"})
        + "\n"
        + json.dumps([1])
        + "\n"
    )
    code, _, err = cli("recipients", "import", str(bad), ENGINE_DATABASE_URL=url)
    assert code == 1  # each problem's wording: tests/runtime/test_recipients_import.py
    assert f"{bad}:2: $: 'email' is a required property" in err and f"{bad}:3: $: a person must be a JSON object" in err
    assert "nothing imported" in err and store.recipient("usr_new") is None
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(person("usr_x")) + "\n{not json\n")
    code, _, err = cli("recipients", "import", str(broken), ENGINE_DATABASE_URL=url)
    assert code == 1 and "not JSON" in err and store.recipient("usr_x") is None
