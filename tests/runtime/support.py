"""Helpers for the runtime tests: Estuary events, a live uvicorn server, waiting for things."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def person(pid: str, name: str = "Ada Lovelace", tz: str = "Europe/London", **extra: Any) -> dict[str, Any]:
    return {"id": pid, "email": f"{pid}@example.com", "name": name, "timezone": tz, **extra}


def booking(bid: str, start: datetime, minutes: int = 60) -> dict[str, Any]:
    return {"id": bid, "start_time": iso(start), "end_time": iso(start + timedelta(minutes=minutes)),
            "service": {"id": "svc_1", "name": "Breathwork"}, "meeting_url": f"https://meet.example.com/{bid}"}


def booking_confirmed(eid: str, bid: str, start: datetime, occurred: datetime, client: str = "usr_c_1",
                      practitioner: str = "usr_p_1") -> dict[str, Any]:
    return {"id": eid, "type": "booking.confirmed", "occurred_at": iso(occurred), "data": {
        "booking": booking(bid, start), "client": person(client, "Maya Chen", "America/New_York"),
        "practitioner": person(practitioner, "Jonas Weber", "Europe/Berlin")}}


def booking_cancelled(eid: str, bid: str, start: datetime, occurred: datetime, client: str = "usr_c_1",
                      practitioner: str = "usr_p_1") -> dict[str, Any]:
    return {"id": eid, "type": "booking.cancelled", "occurred_at": iso(occurred), "data": {
        "booking": booking(bid, start), "cancelled_by": "client",
        "client": person(client, "Maya Chen", "America/New_York"),
        "practitioner": person(practitioner, "Jonas Weber", "Europe/Berlin")}}


def booking_rescheduled(eid: str, bid: str, old: datetime, new: datetime, occurred: datetime,
                        client: str = "usr_c_1", practitioner: str = "usr_p_1") -> dict[str, Any]:
    return {"id": eid, "type": "booking.rescheduled", "occurred_at": iso(occurred), "data": {
        "booking": booking(bid, new), "previous_start_time": iso(old), "rescheduled_by": "client",
        "client": person(client, "Maya Chen", "America/New_York"),
        "practitioner": person(practitioner, "Jonas Weber", "Europe/Berlin")}}


def payment_succeeded(eid: str, pay_id: str, occurred: datetime, practitioner_amount: int = 7000,
                      practitioner: str = "usr_p_1") -> dict[str, Any]:
    return {"id": eid, "type": "payment.succeeded", "occurred_at": iso(occurred), "data": {
        "payment": {"id": pay_id, "amount": practitioner_amount + 1000, "currency": "EUR",
                    "receipt_url": f"https://pay.example.com/{pay_id}", "practitioner_amount": practitioner_amount},
        "client": person("usr_c_1", "Maya Chen", "America/New_York"),
        "practitioner": person(practitioner, "Jonas Weber", "Europe/Berlin")}}


def unbatched(runtime: Any) -> Any:
    """`runtime` with the New Message rules sent at once and throttled per conversation (one per
    15 minutes) instead of batched: the delivery tests' plain immediate notification."""
    from dataclasses import replace

    from engine.rules.model import Throttle

    throttle = Throttle("{{ message.conversation_id }}", timedelta(minutes=15))
    rules = dict(runtime.config.notifications)
    for name in ("client_new_message", "practitioner_new_message"):
        rules[name] = replace(rules[name], batch=None, throttle=throttle)
    runtime.config = replace(runtime.config, notifications=rules)
    return runtime


def message_sent(eid: str, msg_id: str, conversation: str, occurred: datetime, to: str = "usr_c_1") -> dict[str, Any]:
    return {"id": eid, "type": "message.sent", "occurred_at": iso(occurred), "data": {
        "message": {"id": msg_id, "conversation_id": conversation, "preview": "Hello there"},
        "sender": person("usr_p_1", "Jonas Weber", "Europe/Berlin"),
        "recipient": person(to, "Maya Chen", "America/New_York", role="client")}}


def eventually(check: Callable[[], T], within: float = 10.0, every: float = 0.05, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds (generous)."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s (last value: {value!r})")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """An ASGI app served by uvicorn on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, app: Any):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        eventually(lambda: self.server.started, within=10, what="uvicorn start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class EngineProcess:
    """`engine <args>` as a subprocess (its own log file); stopped with SIGTERM, killed if it hangs."""

    def __init__(self, args: list[str], cwd: Any, env: dict[str, str], log_path: Any):
        import subprocess
        import sys

        self.log_path = log_path
        with open(log_path, "wb") as log:  # the process writes through its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli.main", *args], cwd=cwd, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def engine_env(**values: str) -> dict[str, str]:
    """The current environment without any ENGINE_*/COURIER_* setting, plus `values`."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "COURIER_"))}
    env.update({"PYTHONUNBUFFERED": "1", "ENGINE_LOG_LEVEL": "INFO", **values})
    return env


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric_samples(text: str) -> Samples:
    """Every sample of a Prometheus exposition, by (name, labels), read with prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the exposition does not have it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
