"""`engine retry`: failed and paused sends go out again, once each, as the same send (the Courier
stand-in sees the Idempotency-Key of the first attempt), selected by name, time window or id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.clock import utcnow
from engine.delivery.courier import CourierBackend, Credentials
from engine.health import ALARMS
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import booking_confirmed, iso


def failed_sends(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    """Two bookings; their four immediate sends fail (Courier answers 500, one attempt allowed)."""
    rt = make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2), max_attempts=1)
    now = utcnow()
    for i in (1, 2):
        rt.emit(booking_confirmed(f"evt_{i}", f"bk_{i}", now + timedelta(days=3), now), now=now)
    standin.fail_next(4, 500)
    rt.sweep()
    assert len(rt.store.notifications(status=["failed"])) == 4
    return rt


def keys(rt: Any, notification: str) -> set[str]:
    return {r["idempotency_key"] for r in rt.store.notifications(notification=notification)}


def test_retry_by_name_sends_each_once_with_its_idempotency_key(cli: Any, db_url: str, make_runtime: Any,
                                                                  standin: CourierStandin) -> None:
    rt = failed_sends(db_url, make_runtime, standin)
    env = {"ENGINE_DATABASE_URL": db_url, "COURIER_AUTH_TOKEN": COURIER_TOKEN, "COURIER_BASE_URL": standin.url}
    code, out, err = cli("retry", "--notification", "client_booking_confirmation", "--dry-run", **env)
    assert code == 0, err
    assert out.count("would retry #") == 2 and "2 notification(s) would be sent again (dry run" in out
    assert len(rt.store.notifications(status=["failed"])) == 4 and standin.requests == []

    code, out, err = cli("retry", "--notification", "client_booking_confirmation", **env)
    assert code == 0, err
    assert out.strip().endswith("retried: 2 sent")
    wanted = keys(rt, "client_booking_confirmation")
    assert {r["idempotency_key"] for r in standin.requests} == wanted  # the keys of the first attempts
    assert {i["idempotency_key"] for i in standin.injected} >= wanted  # ...which Courier saw fail
    assert {r["status"] for r in rt.store.notifications(notification="client_booking_confirmation")} == {"sent"}
    assert "retry requested (engine retry)" in [h["reason"] for h in rt.store.history(
        rt.store.notifications(notification="client_booking_confirmation")[0]["id"])]

    code, out, _ = cli("retry", "--notification", "client_booking_confirmation", **env)  # once each
    assert (code, out.strip()) == (0, "nothing to retry") and len(standin.requests) == 2


def test_retry_by_id_and_by_window(cli: Any, db_url: str, make_runtime: Any, standin: CourierStandin) -> None:
    rt = failed_sends(db_url, make_runtime, standin)
    env = {"ENGINE_DATABASE_URL": db_url, "COURIER_AUTH_TOKEN": COURIER_TOKEN, "COURIER_BASE_URL": standin.url}
    first, second = [r["id"] for r in rt.store.notifications(notification="practitioner_booking_notification")]
    code, out, err = cli("retry", "--id", str(first), **env)
    assert (code, out.strip().splitlines()[-1]) == (0, "retried: 1 sent"), err
    assert (rt.store.status(first), rt.store.status(second)) == ("sent", "failed")
    code, out, err = cli("retry", "--id", str(first), **env)  # sent now: nothing to do, and it says why
    assert out.strip() == "nothing to retry" and f"#{first}: not retried: sent" in err

    code, out, _ = cli("retry", "--until", iso(utcnow() - timedelta(hours=1)), **env)  # they failed after that
    assert out.strip() == "nothing to retry"
    code, out, err = cli("retry", "--since", "1h", "--notification", "practitioner_booking_notification", **env)
    assert (code, out.strip().splitlines()[-1]) == (0, "retried: 1 sent"), err
    assert rt.store.status(second) == "sent"
    assert len(rt.store.notifications(status=["failed"])) == 2  # the client's two were not selected
    sent = {r["idempotency_key"] for r in standin.requests}
    assert sent == keys(rt, "practitioner_booking_notification")


def test_bad_selections_are_refused_and_change_nothing(cli: Any, sqlite_url: str, make_runtime: Any,
                                                       standin: CourierStandin) -> None:
    rt = failed_sends(sqlite_url, make_runtime, standin)
    env = {"ENGINE_DATABASE_URL": sqlite_url, "COURIER_AUTH_TOKEN": COURIER_TOKEN, "COURIER_BASE_URL": standin.url}
    code, _, err = cli("retry", **env)
    assert code == 2 and "say what to retry" in err
    code, _, err = cli("retry", "--notification", "client_welcom", **env)
    assert code == 2 and "client_welcom: not a notification of the rules in force" in err
    code, _, err = cli("retry", "--since", "yesterday", "--all", **env)
    assert code == 2 and "neither a duration" in err
    assert len(rt.store.notifications(status=["failed"])) == 4 and standin.requests == []


def test_a_send_paused_for_credentials_is_retried_once_the_key_is_fixed(cli: Any, sqlite_url: str, make_runtime: Any,
                                                                         standin: CourierStandin) -> None:
    rt = make_runtime(
        sqlite_url, backend=CourierBackend("revoked", standin.url, timeout=2, credentials=Credentials(60))
    )
    now = utcnow()
    rt.emit(booking_confirmed("evt_1", "bk_1", now + timedelta(days=3), now), now=now)
    rt.sweep()
    ALARMS.set(Credentials.ALARM, True, "credentials accepted")  # this process's alarm: the CLI below has its own
    paused = rt.store.notifications(status=["scheduled"], notification="client_booking_confirmation")[0]
    assert paused["reason"].startswith("paused:")
    code, out, err = cli("retry", "--all", ENGINE_DATABASE_URL=sqlite_url, COURIER_AUTH_TOKEN=COURIER_TOKEN,
                         COURIER_BASE_URL=standin.url)
    assert code == 0 and out.strip().endswith("retried: 2 sent"), err  # the client's and the practitioner's
    assert [r["idempotency_key"] for r in standin.requests].count(paused["idempotency_key"]) == 1
