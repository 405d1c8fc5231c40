"""The metrics an operator scrapes from `engine serve` and `engine worker --metrics-port`.

Real processes on SQLite files deliver through the Courier stand-in (which fails some attempts),
and the figures each one exposes are checked against what the stand-in and the store saw: sends
by notification and outcome, retries, Courier request latency, lateness, webhooks, the overdue
backlog and its oldest send, build info and the process collectors. The exposition is linted by
`promtool check metrics` (Debian's `prometheus` package) when it is installed, and always read
with prometheus-client's parser and held to Prometheus' naming rules.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from engine import __version__
from engine.http.app import build_app
from engine.signing import sign_courier

from .conftest import COURIER_TOKEN
from .support import EngineProcess, LiveServer, engine_env, eventually, free_port, iso, metric_samples, person, sample

WEBHOOK_SECRET = "metrics-webhook-secret"


def registered(eid: str, user: str) -> dict[str, Any]:
    """A registration: client_welcome and client_email_verification fall due at once."""
    return {"id": eid, "type": "user.registered", "occurred_at": iso(datetime.now(UTC)),
            "data": {"user": person(user, role="client"), "verification_url": f"https://estuary.app/verify?t={eid}"}}


def scrape(url: str) -> dict[Any, float]:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return metric_samples(r.text)


def scrape_until(url: str, ready: Callable[[dict[Any, float]], bool], what: str) -> dict[Any, float]:
    found: list[dict[Any, float]] = []

    def check() -> bool:
        found[:] = [scrape(url)]
        return ready(found[0])

    eventually(check, within=30, every=0.1, what=f"{what} on {url}/metrics")
    return found[0]


def wait_for_health(url: str, proc: EngineProcess) -> None:
    def up() -> bool:
        assert proc.alive(), proc.output()[-3000:]
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(up, within=30, what=f"{url} answering")


def env_for(tmp_path: Path, courier_url: str, **extra: str) -> dict[str, str]:
    return engine_env(ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'engine.db'}",
                      ENGINE_QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}", COURIER_AUTH_TOKEN=COURIER_TOKEN,
                      COURIER_BASE_URL=courier_url, COURIER_TIMEOUT="2", COURIER_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      ENGINE_SWEEP_INTERVAL="0.1", ENGINE_METRICS_REFRESH="0.2", **extra)


# -- engine serve: sends, retries, a failure, Courier latency, webhooks --------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`engine serve` delivers two registrations' sends (4 sends), one registration after the other;
    the stand-in fails the first 3 attempts with a 503 and ENGINE_MAX_ATTEMPTS=2, so the first two
    sends are retried and one of them fails; webhooks arrive for a sent one. What /metrics, the
    store and the stand-in said."""
    from tests.support.courier_standin import CourierStandin

    from .conftest import ROOT

    tmp = tmp_path_factory.mktemp("served")
    project = tmp / "project"
    project.mkdir()
    shutil.copy(ROOT / "notifications.yaml", project / "notifications.yaml")
    for folder in ("rules", "templates_map"):
        shutil.copytree(ROOT / folder, project / folder)
    with CourierStandin(token=COURIER_TOKEN) as standin:
        port = free_port()
        proc = EngineProcess(["serve", "--port", str(port)], project,
                             env_for(tmp, standin.url, ENGINE_MAX_ATTEMPTS="2"), tmp / "serve.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, proc)
            before = scrape(url)
            # The first registration's two sends: both first attempts and the first retry get a 503.
            standin.fail_next(3, status=503)
            for n in (1, 2):
                answer = httpx.post(url + "/events", json=registered(f"evt_m{n}", f"usr_m{n}"), timeout=10)
                assert answer.status_code == 202
                rows = eventually(lambda n=n: finished(url, 2 * n), within=45, every=0.2,
                                  what=f"{2 * n} sends finished")
            sent = next(r for r in rows if r["status"] == "sent")
            for body, headers in webhooks(sent["request_id"]):
                httpx.post(url + "/webhooks/courier", content=body, headers=headers, timeout=10)
            time.sleep(0.5)  # the store's figures are read every 0.2 s
            text = httpx.get(url + "/metrics", timeout=10).text
            yield {"before": before, "after": metric_samples(text), "text": text, "rows": rows,
                   "standin_log": standin.log, "url": url, "log": proc.output()}
        finally:
            proc.stop()


def finished(url: str, count: int) -> list[dict[str, Any]]:
    """Every row, once `count` of them are sent or failed."""
    rows = httpx.get(url + "/notifications", params={"limit": "100"}, timeout=10).json()["notifications"]
    return rows if sum(1 for r in rows if r["status"] in ("sent", "failed")) == count else []


def webhooks(request_id: str) -> list[tuple[bytes, dict[str, str]]]:
    """A signed DELIVERED webhook for a sent message, the same again, and an unsigned one."""
    body = json.dumps({"type": "message:updated", "data": {"id": request_id, "status": "DELIVERED"}}).encode()
    signed = {"content-type": "application/json",
              "courier-signature": sign_courier(WEBHOOK_SECRET, body, int(time.time() * 1000))}
    again = {**signed, "courier-signature": sign_courier(WEBHOOK_SECRET, body, int(time.time() * 1000) + 1)}
    return [(body, signed), (body, again), (body, {"content-type": "application/json"})]


def more(flow: dict[str, Any], name: str, **labels: str) -> float:
    return sample(flow["after"], name, **labels) - sample(flow["before"], name, **labels)


def test_sends_by_notification_and_outcome_and_retries_match_the_store(served: dict[str, Any]) -> None:
    rows = served["rows"]
    by = {(r["notification"], r["status"]) for r in rows}
    for notification, status in by:
        count = sum(1 for r in rows if (r["notification"], r["status"]) == (notification, status))
        counted = more(served, "engine_sends_total", notification=notification, outcome=status)
        assert counted == count, (notification, status)
    assert sum(1 for r in rows if r["status"] == "failed") == 1
    retries = sum(more(served, "engine_send_retries_total", notification=n) for n in {r["notification"] for r in rows})
    assert retries == 2  # the two first attempts that got a 503; the third 503 ended a send (2 attempts at most)
    # every notification of the rules has its series from the start, at 0 when nothing happened
    assert ("engine_sends_total", frozenset({"notification": "practitioner_welcome", "outcome": "sent"}.items())) \
        in served["after"]


def test_courier_latency_counts_every_request_by_outcome(served: dict[str, Any]) -> None:
    posts = [e for e in served["standin_log"] if e["path"] == "/send"]
    assert len(posts) == 6  # 4 first attempts, 2 retries
    sent = more(served, "engine_courier_request_duration_seconds_count", outcome="sent")
    retried = more(served, "engine_courier_request_duration_seconds_count", outcome="retry")
    assert (sent, retried) == (3, 3)
    assert 0 < more(served, "engine_courier_request_duration_seconds_sum", outcome="sent") < 3 * 2.0
    assert more(served, "engine_courier_request_duration_seconds_bucket", outcome="sent", le="+Inf") == 3


def test_lateness_is_observed_for_every_sent_send(served: dict[str, Any]) -> None:
    assert more(served, "engine_send_lateness_seconds_count") == 3
    # sent within seconds of falling due (the sweep runs every 0.1 s; a retry after its back-off)
    assert more(served, "engine_send_lateness_seconds_bucket", le="10.0") == 3
    assert 0 <= more(served, "engine_send_lateness_seconds_sum") < 30


def test_webhooks_are_counted_by_outcome(served: dict[str, Any]) -> None:
    assert more(served, "engine_webhooks_total", outcome="applied") == 1
    assert more(served, "engine_webhooks_total", outcome="duplicate") == 1
    assert more(served, "engine_webhooks_total", outcome="refused") == 1


def signed_webhook(url: str, payload: Any, secret: str = WEBHOOK_SECRET) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    time.sleep(0.002)  # each request signed at its own millisecond: a repeated signature is a replay
    return httpx.post(url + "/webhooks/courier", content=body, timeout=10, headers={
        "content-type": "application/json", "courier-signature": sign_courier(secret, body, int(time.time() * 1000))})


def status(message_id: str, courier_status: str) -> dict[str, Any]:
    return {"type": "message:updated", "data": {"id": message_id, "status": courier_status}}


def test_every_webhook_answer_is_counted_under_its_own_outcome(make_runtime: Any, sqlite_url: str) -> None:
    """Each answer the webhook route can give (each `result` the store returns, an ignored type or
    status, a refused signature, a malformed body) moves its own outcome's count by one and no
    other: a status that overtook its send (202 `pending`) is not counted as applied."""
    from prometheus_client import generate_latest

    from engine.metrics import REGISTRY, WEBHOOK_OUTCOMES

    rt = make_runtime(sqlite_url, webhook_secret=WEBHOOK_SECRET)
    now = datetime.now(UTC)
    rt.emit(registered("evt_wh", "usr_wh"), now=now)
    row_id = rt.store.queue_due(now, limit=1)[0]
    rt.store.finish(rt.store.claim(row_id, now), "sent", now, request_id="req-sent")

    def counts() -> dict[str, float]:
        samples = metric_samples(generate_latest(REGISTRY).decode())
        return {o: sample(samples, "engine_webhooks_total", outcome=o) for o in WEBHOOK_OUTCOMES}

    cases: list[tuple[str, Callable[[str], httpx.Response], int, str | None]] = [
        ("applied", lambda url: signed_webhook(url, status("req-sent", "OPENED")), 200, "applied"),
        ("duplicate", lambda url: signed_webhook(url, status("req-sent", "OPENED")), 200, "duplicate"),
        ("stale", lambda url: signed_webhook(url, status("req-sent", "DELIVERED")), 200, "stale"),
        ("pending", lambda url: signed_webhook(url, status("req-not-yet", "DELIVERED")), 202, "pending"),
        ("ignored", lambda url: signed_webhook(url, {"type": "message:created", "data": {}}), 200, None),
        ("ignored", lambda url: signed_webhook(url, status("req-sent", "SIMULATED")), 200, None),
        ("refused", lambda url: signed_webhook(url, status("req-sent", "CLICKED"), secret="not-the-secret"), 401, None),
        ("invalid", lambda url: signed_webhook(url, {"type": "message:updated", "data": {}}), 422, None),
        ("invalid", lambda url: signed_webhook(url, b"{not json"), 400, None),
    ]
    with LiveServer(build_app(rt)) as server:
        for outcome, post, code, result in cases:
            before = counts()
            answer = post(server.url)
            assert answer.status_code == code, (outcome, answer.text)
            if result is not None:
                assert answer.json()["result"] == result
            after = counts()
            moved = {o: after[o] - before[o] for o in WEBHOOK_OUTCOMES if after[o] != before[o]}
            assert moved == {outcome: 1}, (outcome, answer.text, moved)


def test_store_figures_build_info_and_process_collectors(served: dict[str, Any]) -> None:
    after = served["after"]
    assert sample(after, "engine_notifications", status="sent") == 3
    assert sample(after, "engine_notifications", status="failed") == 1
    assert sample(after, "engine_notifications", status="scheduled") == 0  # shown at 0, not left out
    assert sample(after, "engine_overdue_sends") == 0 and sample(after, "engine_oldest_overdue_send_age_seconds") == 0
    assert time.time() - 60 < sample(after, "engine_store_figures_timestamp_seconds") <= time.time()
    assert sample(after, "engine_build_info", version=__version__) == 1
    assert sample(after, "process_resident_memory_bytes") > 0 and sample(after, "process_cpu_seconds_total") > 0
    assert any(name == "python_info" for name, _ in after)
    assert sample(after, "python_gc_collections_total", generation="0") > 0
    assert ("engine_courier_credentials_rejected", frozenset()) in after  # Courier took the key: shown, at 0
    assert sample(after, "engine_courier_credentials_rejected") == 0
    assert sample(after, "engine_sends_paused_total", notification="client_welcome") == 0


def test_one_log_line_per_send_outcome_with_its_ids(served: dict[str, Any]) -> None:
    log = served["log"]
    for row in served["rows"]:
        ending = "sent" if row["status"] == "sent" else "failed"
        lines = [line for line in log.splitlines() if f"{ending} {row['notification']} #{row['id']} " in line]
        assert len(lines) == 1, (row, lines)
    assert len(re.findall(r" retrying \w+ #\d+ ", log)) == 2
    assert "listening on http://127.0.0.1:" in log
    assert "HTTP Request: POST" not in log and "Executing engine.deliver" not in log  # one line, not three


# -- the exposition itself -----------------------------------------------------------------------------
def check_names(text: str) -> None:
    """Prometheus' naming rules: snake case, counters end in _total, durations in seconds, a
    help text for every family, and no label with an unbounded value (a row or request id)."""
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", family.name), family.name
        assert family.documentation, f"{family.name} has no help text"
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.name.startswith("engine_") and family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for s in family.samples:
            assert not {"id", "request_id", "recipient_id", "event_id"} & set(s.labels), (s.name, s.labels)


def promtool_or_skip() -> str:
    found = shutil.which("promtool")
    if found is None:
        why = "promtool is not installed (Debian's `prometheus` package provides it)"
        if os.environ.get("ENGINE_TEST_REQUIRE_PROMTOOL") == "1":
            pytest.fail(why + " and ENGINE_TEST_REQUIRE_PROMTOOL=1", pytrace=False)
        pytest.skip(why)
    return found


def promtool_check(text: str) -> None:
    done = subprocess.run([promtool_or_skip(), "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_the_serve_exposition_follows_the_naming_rules(served: dict[str, Any]) -> None:
    check_names(served["text"])


def test_the_serve_exposition_passes_promtool(served: dict[str, Any]) -> None:
    promtool_check(served["text"])


# -- engine worker: its own metrics port, and the overdue backlog ------------------------------------------
def test_a_worker_exposes_its_sends_and_both_see_the_overdue_backlog_drain(project: Path, tmp_path: Path,
                                                                          standin: Any) -> None:
    """`engine serve --no-worker` takes the events; nothing delivers, so its sends are overdue and
    the oldest one's age grows. A worker started on the same store delivers them: its own
    /metrics counts the sends and the Courier requests, and the backlog drains on both."""
    env = env_for(tmp_path, standin.url)
    port, metrics_port = free_port(), free_port()
    serve = EngineProcess(["serve", "--no-worker", "--port", str(port)], project, env, tmp_path / "serve.log")
    worker = None
    try:
        hook = f"http://127.0.0.1:{port}"
        wait_for_health(hook, serve)
        assert httpx.post(hook + "/events", json=registered("evt_w1", "usr_w1"), timeout=10).status_code == 202
        posted = time.time()
        backlog = scrape_until(hook, lambda s: sample(s, "engine_overdue_sends") == 2, "two overdue sends")
        time.sleep(1.0)
        later = scrape(hook)
        age = sample(later, "engine_oldest_overdue_send_age_seconds")
        assert 1.0 <= age <= time.time() - posted + 1.0, age
        assert age > sample(backlog, "engine_oldest_overdue_send_age_seconds")
        assert sample(later, "engine_notifications", status="scheduled") + \
            sample(later, "engine_notifications", status="queued") == 2

        worker = EngineProcess(["worker", "--metrics-port", str(metrics_port)], project, env, tmp_path / "worker.log")
        url = f"http://127.0.0.1:{metrics_port}"
        wait_for_health(url, worker)
        worked = scrape_until(url, lambda s: sample(s, "engine_overdue_sends") == 0
                              and sample(s, "engine_notifications", status="sent") == 2, "the backlog sent")
        for notification in ("client_welcome", "client_email_verification"):
            assert sample(worked, "engine_sends_total", notification=notification, outcome="sent") == 1
        assert sample(worked, "engine_courier_request_duration_seconds_count", outcome="sent") == 2
        assert sample(worked, "engine_send_lateness_seconds_count") == 2
        assert sample(worked, "engine_send_lateness_seconds_sum") >= 2 * 1.0  # they waited for the worker
        assert sample(worked, "engine_build_info", version=__version__) == 1
        assert sample(worked, "process_resident_memory_bytes") > 0
        assert ("engine_courier_credentials_rejected", frozenset()) in worked
        assert ("engine_sends_paused_total", frozenset({"notification": "client_welcome"}.items())) in worked
        assert len(standin.requests) == 2
        scrape_until(hook, lambda s: sample(s, "engine_overdue_sends") == 0, "the hook's backlog at 0")
        text = httpx.get(url + "/metrics", timeout=10).text
        check_names(text)
        assert f"listening on {url} (/healthz, /readyz, /metrics)" in worker.output()
    finally:
        serve.stop()
        if worker is not None:
            worker.stop()
    if shutil.which("promtool") or os.environ.get("ENGINE_TEST_REQUIRE_PROMTOOL") == "1":
        promtool_check(text)


# -- the store's figures are cached ------------------------------------------------------------------------
def test_scrapes_do_not_count_the_store_each_time(make_runtime: Any, sqlite_url: str) -> None:
    """Twenty scrapes within a refresh period read the store once, not twenty times."""
    rt = make_runtime(sqlite_url, metrics_refresh_s=30.0)
    counts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "count(" in statement.lower():
            counts.append(statement)

    event.listen(rt.store.engine, "before_cursor_execute", seen)
    with LiveServer(build_app(rt)) as server:
        for _ in range(20):
            assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200
    by_status = [s for s in counts if "group by" in s.lower()]
    assert len(by_status) == 1, counts
