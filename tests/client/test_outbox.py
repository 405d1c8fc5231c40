"""The Django outbox against a real `engine serve`, on SQLite and PostgreSQL: what commits is
relayed exactly once and in order, through a killed engine and beside a second relay; what rolls
back is never sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from engine_client import Client, Retry

from tests.client.conftest import TOKEN, Hook, profile_completed
from tests.client.test_client import LoseFirstAnswer

QUICK = {"attempts": 3, "backoff": 0.05, "max_backoff": 0.2}


def engine_settings(hook: Hook) -> Any:
    from django.test import override_settings

    return override_settings(ENGINE_CLIENT={"URL": hook.url, "TOKEN": TOKEN, "TIMEOUT": 5, "RETRY": QUICK})


def emit_committed(alias: str, count: int, per_transaction: int = 10) -> list[str]:
    from django.db import transaction
    from engine_client.django import emit_on_commit

    ids: list[str] = []
    for start in range(0, count, per_transaction):
        with transaction.atomic(using=alias):
            ids += [emit_on_commit(profile_completed(f"o{start + i}"), using=alias)
                    for i in range(min(per_transaction, count - start))]
    return ids


def statuses(alias: str) -> dict[str, str]:
    from engine_client.django.models import OutboxEvent

    return dict(OutboxEvent.objects.using(alias).values_list("event_id", "status"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def arrived(hook: Hook, ids: list[str]) -> list[str]:
    """Of `ids`, those in the engine's store, in the order the engine received them."""
    wanted = set(ids)
    return [i for i in hook.stored() if i in wanted]


class Relays:
    """`relay_forever` in threads, as `manage.py relay_events` runs it; stopped after the test."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, alias: str, batch: int, interval: float = 0.05) -> None:
        from django.db import connections
        from engine_client.django.outbox import relay_forever
        from engine_client.django.settings import client

        def run() -> None:
            with client() as engine:
                try:
                    relay_forever(engine, batch, interval, alias, self.stop)
                finally:
                    connections[alias].close()

        thread = threading.Thread(target=run, name=f"relay-{len(self.threads)}")
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def relays() -> Iterator[Relays]:
    found = Relays()
    try:
        yield found
    finally:
        found.close()


def test_a_rolled_back_transaction_sends_nothing(outbox_db: str, hook: Hook) -> None:
    from django.core.management import call_command
    from django.db import transaction
    from engine_client.django import emit_on_commit

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic(using=outbox_db):
        lost = emit_on_commit(profile_completed("rolled-back"), using=outbox_db)
        raise Abandon
    kept = emit_committed(outbox_db, 3)
    with engine_settings(hook):
        call_command("relay_events", "--once", database=outbox_db, verbosity=0)
    assert statuses(outbox_db) == dict.fromkeys(kept, "sent")
    assert arrived(hook, kept + [lost]) == kept


def test_killing_the_engine_mid_relay_loses_nothing_and_stores_nothing_twice(outbox_db: str, own_hook: Hook,
                                                                              relays: Relays) -> None:
    ids = emit_committed(outbox_db, 200)
    with engine_settings(own_hook):
        relays.start(outbox_db, batch=5)
        wait_until(lambda: len(arrived(own_hook, ids)) >= 40, 20, "the first events to arrive")
        own_hook.process.kill()
        assert 40 <= len(arrived(own_hook, ids)) < 200, "the engine was killed before the relay was done"
        time.sleep(0.5)  # the relay meets a dead engine, and backs off
        own_hook.process.start()
        wait_until(lambda: set(statuses(outbox_db).values()) == {"sent"}, 30, "every row to be marked sent")
    assert arrived(own_hook, ids) == ids  # each once, in the order they were written


# PostgreSQL only: SQLite has no row locks, and the client's README says to run one relay there.
@pytest.mark.parametrize("outbox_db", [pytest.param("pg", id="postgresql")], indirect=True)
def test_two_relays_at_once_keep_order_and_send_each_event_once(outbox_db: str, hook: Hook, relays: Relays) -> None:
    ids = emit_committed(outbox_db, 200)
    with engine_settings(hook):
        relays.start(outbox_db, batch=7)
        relays.start(outbox_db, batch=7)
        wait_until(lambda: set(statuses(outbox_db).values()) == {"sent"}, 30, "every row to be marked sent")
    assert arrived(hook, ids) == ids


def test_a_lost_answer_is_resent_and_taken_as_a_duplicate(outbox_db: str, hook: Hook) -> None:
    from engine_client.django.outbox import relay

    ids = emit_committed(outbox_db, 12)
    transport = LoseFirstAnswer()
    with Client(hook.url, token=TOKEN, retry=Retry(**QUICK), transport=transport) as client:
        done = relay(client, batch=100, using=outbox_db)
    assert done.sent == 12 and len(transport.requests) == 2
    assert statuses(outbox_db) == dict.fromkeys(ids, "sent")
    assert arrived(hook, ids) == ids


def test_a_refused_event_is_set_aside_and_the_others_go_on(outbox_db: str, hook: Hook) -> None:
    from django.core.management import call_command
    from engine_client.django import emit_on_commit
    from engine_client.django.models import OutboxEvent

    before = emit_committed(outbox_db, 3)
    bad = emit_on_commit({"type": "practitioner.profile_completed", "data": {}}, using=outbox_db)
    after = emit_committed(outbox_db, 3)
    with engine_settings(hook):
        call_command("relay_events", "--once", "--batch", "100", database=outbox_db, verbosity=0)
    assert statuses(outbox_db) == {**dict.fromkeys(before + after, "sent"), bad: "refused"}
    assert (
        "$.data: 'practitioner' is a required property"
        in OutboxEvent.objects.using(outbox_db).get(event_id=bad).last_error
    )
    assert arrived(hook, before + [bad] + after) == before + after


def test_bad_input_raises_in_the_callers_code_and_writes_nothing(outbox_db: str) -> None:
    from engine_client.django import emit_on_commit

    with pytest.raises(TypeError, match="needs a time zone"):
        emit_on_commit(profile_completed("naive", data={"at": datetime(2026, 1, 1)}), using=outbox_db)
    with pytest.raises(ValueError, match="needs a `type`"):
        emit_on_commit({"data": {}}, using=outbox_db)
    assert statuses(outbox_db) == {}


def test_an_engine_that_is_down_fails_relay_once_and_leaves_the_rows_pending(outbox_db: str) -> None:
    from django.core.management import CommandError, call_command
    from django.test import override_settings

    from tests.support.engine_process import free_port

    ids = emit_committed(outbox_db, 2)
    down = {"URL": f"http://127.0.0.1:{free_port()}", "TOKEN": TOKEN, "RETRY": {"attempts": 2, "backoff": 0.01}}
    with override_settings(ENGINE_CLIENT=down), pytest.raises(CommandError, match="ConnectError"):
        call_command("relay_events", "--once", database=outbox_db, verbosity=0)
    assert statuses(outbox_db) == dict.fromkeys(ids, "pending")
    with override_settings(ENGINE_CLIENT={"TOKEN": TOKEN}), pytest.raises(Exception, match="needs a URL"):
        call_command("relay_events", "--once", database=outbox_db, verbosity=0)
