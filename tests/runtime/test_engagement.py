"""Engagement: read, opened and clicked statuses from Courier's webhooks are counted even when
they come after a further status; unsubscribes are counted per notification and time; `engine
stats` turns them into rates and says which A/B variant leads, and when the counts cannot tell."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engine.cli.stats import MIN_SENDS, leaders, summarise, two_proportion_z
from engine.clock import utcnow
from engine.http.app import build_app
from engine.signing import make_unsubscribe_token

from .support import LiveServer, person
from .test_http import SECRET_KEY, WEBHOOK_SECRET, webhook


@pytest.fixture
def rt(db_url: str, make_runtime: Any) -> Any:
    return make_runtime(db_url, webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
                        public_url="https://engine.example.com")


@pytest.fixture
def http(rt: Any) -> Iterator[httpx.Client]:
    with LiveServer(build_app(rt)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def sends(rt: Any, n: int, notification: str = "practitioner_new_review") -> list[dict[str, Any]]:
    now = utcnow()
    for i in range(n):
        assert rt.send_now(notification, person(f"usr_p_{i}"), example=True, now=now, idempotency_key=f"k{i}") == "sent"
    return rt.store.notifications(notification=notification, limit=None)


def test_read_opened_and_clicked_are_counted_from_webhooks_in_any_order(http: httpx.Client, rt: Any) -> None:
    rows = sends(rt, 4)

    def status(row: dict[str, Any], value: str) -> None:
        body = {"type": "message:updated", "data": {"id": row["request_id"], "status": value}}
        assert webhook(http, body).status_code == 200

    for value in ("DELIVERED", "CLICKED", "READ"):  # a read after a click: recorded, not a step back
        status(rows[0], value)
    for value in ("OPENED", "DELIVERED"):
        status(rows[1], value)
    status(rows[2], "READ")
    status(rows[2], "READ")  # Courier's retry of the same webhook counts once
    found = {(r["mark"]): r["count"] for r in rt.store.engagement(utcnow() - timedelta(hours=1))}
    assert found == {"clicked": 1, "read": 2, "opened": 1}
    assert [r["delivery_status"] for r in rt.store.notifications(notification="practitioner_new_review")] == \
        ["clicked", "opened", "read", None]
    [line] = summarise(
        rt.store.stats(utcnow() - timedelta(hours=1)),
        rt.store.engagement(utcnow() - timedelta(hours=1)),
        rt.store.unsubscribes(utcnow() - timedelta(hours=1)),
        rt.config,
    )
    assert (line["sent"], line["read_rate"], line["open_rate"], line["click_rate"]) == (4, 0.5, 0.25, 0.25)
    assert line["delivery_rate"] == 0.75


def test_an_unsubscribe_is_counted_once_per_notification_and_time(http: httpx.Client, rt: Any) -> None:
    before = utcnow()
    token = make_unsubscribe_token(SECRET_KEY, "usr_c_1", "client_new_message", before)
    for _ in range(2):  # a second click changes nothing and counts nothing
        r = http.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
    category = make_unsubscribe_token(SECRET_KEY, "usr_c_2", "category:activity", before)
    assert http.post("/unsubscribe", params={"token": category}).status_code == 200
    assert rt.store.preferences("usr_c_1") == {"client_new_message": False}
    assert rt.store.preferences("usr_c_2") == {"activity": False}
    assert rt.store.unsubscribes(before - timedelta(seconds=1)) == {"client_new_message": 1, "category:activity": 1}
    assert rt.store.unsubscribes(utcnow() + timedelta(seconds=1)) == {}


def test_rates_are_n_a_where_nothing_measures_them(rt: Any) -> None:
    sends(rt, 2, "client_welcome")
    summary = {s["notification"]: s for s in summarise(rt.store.stats(utcnow() - timedelta(hours=1)), (), {},
                                                       rt.config)}
    welcome = summary["client_welcome"]
    assert (welcome["open_rate"], welcome["click_rate"], welcome["read_rate"]) == (None, None, None)


def line(variant: str, sent: int, clicks: int) -> dict[str, Any]:
    return {"notification": "n", "variant": variant, "sent": sent, "clicks": clicks, "opens": 0, "reads": 0,
            "click_rate": clicks / sent, "open_rate": 0.0, "read_rate": None}


@pytest.mark.parametrize("a, b, verdict, leader", [
    ((MIN_SENDS - 1, 20), (400, 10), "not enough data: 29 sends in a variant, at least 30 needed", None),
    ((400, 80), (400, 40), "control leads on clicks (z = 3.96, 95 %)", "control"),
    ((400, 44), (400, 40), "too close to call: control and short differ by chance at 95 %", None),
])
def test_a_variant_leads_only_when_the_counts_tell(a: tuple[int, int], b: tuple[int, int], verdict: str,
                                                   leader: str | None) -> None:
    [lead] = leaders([line("control", *a), line("short", *b)])
    assert (lead["verdict"], lead["leader"], lead["measure"]) == (verdict, leader, "clicks")
    assert lead["counts"] == {
        "control": {"sends": a[0], "successes": a[1]},
        "short": {"sends": b[0], "successes": b[1]},
    }


def test_the_z_statistic() -> None:
    assert two_proportion_z(80, 400, 40, 400) == 3.96
    assert two_proportion_z(0, 10, 0, 10) is None and two_proportion_z(1, 0, 1, 1) is None


def test_a_channel_turned_off_leaves_the_inbox(rt: Any) -> None:
    now = utcnow()
    rt.store.set_preferences("usr_c_1", {"client_new_message:email": False}, now)
    assert rt.send_now("client_new_message", person("usr_c_1"), example=True, now=now) == "sent"
    [row] = rt.store.notifications(notification="client_new_message", with_payload=True)
    assert row["channels"] == ["inbox"]
    rt.store.set_preferences("usr_c_1", {"client_new_message:inbox": False}, now)
    assert (
        rt.send_now("client_new_message", person("usr_c_1"), example=True, now=now, idempotency_key="again")
        == "skipped"
    )
