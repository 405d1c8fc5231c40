"""Batches on the live store (SQLite and PostgreSQL) through the real Courier client: a burst of
messages per conversation is one send when its window closes, with `items` and `count`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from engine.delivery import CourierBackend
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, message_sent

WINDOW = timedelta(minutes=10)


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    return make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2))


def burst(rt: Any, conversation: str, minutes: list[float], first: int = 0) -> None:
    for i, m in enumerate(minutes, first):
        at = NOW + timedelta(minutes=m)
        rt.emit(message_sent(f"evt_{conversation}_{i}", f"msg_{i}", conversation, at), now=at)


def sent_data(standin: CourierStandin) -> list[dict[str, Any]]:
    return [r["body"]["message"]["data"] for r in standin.requests]


def test_a_burst_is_one_send_when_the_window_after_its_first_message_closes(rt: Any, standin: CourierStandin) -> None:
    burst(rt, "conv_a", [0, 2, 9.5])
    burst(rt, "conv_b", [1], first=10)
    rt.sweep(NOW + WINDOW - timedelta(seconds=1))
    assert standin.requests == [] and rt.store.notifications(notification="client_new_message") == []
    rt.sweep(NOW + WINDOW)
    [a] = sent_data(standin)
    assert (a["count"], a["conversation_id"], a["message_id"]) == (3, "conv_a", "msg_2")
    assert [i["message"]["id"] for i in a["items"]] == ["msg_0", "msg_1", "msg_2"]
    rt.sweep(NOW + timedelta(minutes=11))
    assert [(d["conversation_id"], d["count"]) for d in sent_data(standin)] == [("conv_a", 3), ("conv_b", 1)]


def test_a_message_after_its_batch_went_out_opens_the_next_one(rt: Any, standin: CourierStandin) -> None:
    burst(rt, "conv_a", [0, 5])
    rt.sweep(NOW + WINDOW)
    burst(rt, "conv_a", [10, 12], first=2)  # the first at the very instant the batch closed
    rt.sweep(NOW + timedelta(minutes=20))
    assert [(d["count"], d["message_id"]) for d in sent_data(standin)] == [(2, "msg_1"), (2, "msg_3")]
    keys = [r["idempotency_key"] for r in rt.store.notifications(notification="client_new_message")]
    assert len(set(keys)) == 2


def test_max_items_keeps_the_latest_and_count_says_how_many_came(rt: Any, standin: CourierStandin) -> None:
    rule = rt.config.notifications["client_new_message"]
    assert rule.batch is not None
    rules = {**rt.config.notifications, rule.id: replace(rule, batch=replace(rule.batch, max_items=3))}
    rt.config = replace(rt.config, notifications=rules)
    burst(rt, "conv_a", [m / 2 for m in range(8)])
    rt.sweep(NOW + WINDOW)
    [data] = sent_data(standin)
    assert data["count"] == 8 and [i["message"]["id"] for i in data["items"]] == ["msg_5", "msg_6", "msg_7"]


def test_upcoming_shows_a_collecting_batch_with_its_count(rt: Any) -> None:
    burst(rt, "conv_a", [0, 1, 2])
    [row] = [r for r in rt.upcoming(NOW + timedelta(hours=1), now=NOW + timedelta(minutes=3))
             if r["notification"] == "client_new_message"]
    assert (row["status"], row["digest_items"], row["send_at"]) == ("collecting", 3, NOW + WINDOW)
    assert row["data"]["count"] == 3


def test_a_batch_rule_sent_directly_is_a_batch_of_one(rt: Any, standin: CourierStandin) -> None:
    data = message_sent("evt_x", "msg_x", "conv_x", NOW)["data"]
    assert rt.send_now("client_new_message", data["recipient"], data, now=NOW) == "sent"
    [sent] = sent_data(standin)
    assert (sent["count"], sent["message_id"]) == (1, "msg_x")
