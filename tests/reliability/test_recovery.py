"""Self-healing: real faults under a running `engine serve`, then the fault ends. Every loop (sweep,
queue reads, intake) must come back by itself, deliver what fell due meanwhile, and log the fault
once per state change instead of once per turn.

Faults: the SQLite database and queue made immutable (`chattr +i`: writes fail with an I/O error,
as on a read-only disk); Redis and PostgreSQL behind a loopback proxy that stops answering and
then answers again.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import utcnow
from tests.runtime.support import booking_confirmed, eventually, payment_succeeded
from tests.support.courier_standin import CourierStandin
from tests.support.engine_process import Engine, copy_config, engine_env

MAX_LOG_LINES = 40  # the whole run's log, fault and recovery included (it was thousands)


class Proxy:
    """A TCP proxy on loopback to `upstream`: `down()` cuts every connection and refuses new ones
    (the port is closed), `up()` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        assert self._listener is not None
        # shutdown() wakes the thread blocked in accept(); close() alone leaves the port listening until it returns
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()


def host_port(url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.host or "127.0.0.1", int(parsed.port or 0)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)


@pytest.fixture
def standin() -> Iterator[CourierStandin]:
    with CourierStandin(token="tok") as s:
        yield s


def log_lines(engine: Engine) -> list[str]:
    return [line for line in engine.log.read_text().splitlines() if line.strip()]


def post(engine: Engine, event: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{engine.port}/events", json=event, timeout=30)


def soon_reminders(eid: str, seconds: float) -> dict[str, Any]:
    """A booking whose two 30-minute reminders fall due in `seconds`."""
    now = utcnow()
    return booking_confirmed(eid, "bk_" + eid, now + timedelta(minutes=30, seconds=seconds), now)


def templates(standin: CourierStandin) -> list[str]:
    return sorted(r["body"]["message"]["template"] for r in standin.requests)


def _chattr(flag: str, paths: list[Path]) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return done.returncode == 0


def test_sends_due_while_the_database_was_read_only_go_out_once_it_is_writable(
    workdir: Path, standin: CourierStandin
) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    engine = Engine(workdir, engine_env(workdir, standin.url, ENGINE_LOG_LEVEL="INFO")).start()
    frozen: list[Path] = []
    try:
        assert post(engine, soon_reminders("e_before", 3)).status_code == 202
        eventually(lambda: len(standin.requests) == 2, what="the two booking confirmations")
        # the -shm file is mapped in memory: an immutable one kills the process (SIGBUS), another fault
        frozen = [
            p for p in workdir.iterdir() if p.name.startswith(("engine.db", "queue.db")) and not p.name.endswith("-shm")
        ]
        if not _chattr("+i", frozen):
            pytest.skip("chattr +i is not permitted here (needs root and a file system that supports it)")
        refused = post(engine, payment_succeeded("e_during", "pay_during", utcnow()))
        assert refused.status_code == 503 and refused.headers["retry-after"]
        time.sleep(6)  # the reminders fell due 3 s ago: the sweep has failed a few times
        assert len(standin.requests) == 2
        _chattr("-i", frozen)
        frozen = []
        eventually(lambda: len(standin.requests) == 4, within=15, what="the reminders due while read-only")
        assert post(engine, payment_succeeded("e_after", "pay_after", utcnow())).status_code == 202
        eventually(lambda: len(standin.requests) == 5, within=10, what="a receipt after recovery")
    finally:
        _chattr("-i", frozen)
        engine.stop()
    lines = log_lines(engine)
    assert "client_booking_reminder_30m" in " ".join(templates(standin)).lower() or len(standin.requests) == 5
    assert sum("sweep failing" in line for line in lines) >= 1, "\n".join(lines)
    assert any("sweep recovered after" in line for line in lines), "\n".join(lines)
    assert len(lines) <= MAX_LOG_LINES + 20, "\n".join(lines[-60:])  # + the start-up's migration lines
    assert not any(line.startswith("Traceback") for line in lines), "\n".join(lines)


def test_deliveries_resume_when_redis_answers_again(workdir: Path, standin: CourierStandin, redis_url: str) -> None:
    proxy = Proxy(host_port(redis_url))
    queue = redis_url.replace(f":{host_port(redis_url)[1]}", f":{proxy.port}", 1)
    engine = Engine(workdir, engine_env(workdir, standin.url, ENGINE_QUEUE_URL=queue, ENGINE_LOG_LEVEL="INFO")).start()
    try:
        assert post(engine, soon_reminders("e_before", 2)).status_code == 202
        eventually(lambda: len(standin.requests) == 2, what="the two booking confirmations")
        proxy.down()
        accepted = post(engine, payment_succeeded("e_during", "pay_during", utcnow()))
        assert accepted.status_code == 202  # the store holds it: the queue only carries "send N now"
        time.sleep(8)
        assert len(standin.requests) < 5, "nothing waited for the queue"
        proxy.up()
        eventually(
            lambda: len(standin.requests) == 5, within=20, what="the reminders and the receipt due while Redis was down"
        )
    finally:
        engine.stop()
        proxy.down()
    lines = log_lines(engine)
    assert any("recovered after" in line for line in lines), "\n".join(lines)
    assert len(lines) <= MAX_LOG_LINES, "\n".join(lines[-60:])
    assert standin.sends_by_key() and max(standin.sends_by_key().values()) == 1


def test_readiness_follows_postgresql_down_and_back(workdir: Path, standin: CourierStandin, pg_url: str) -> None:
    proxy = Proxy(host_port(pg_url))
    host, port = host_port(pg_url)
    database = pg_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}", 1)
    engine = Engine(
        workdir, engine_env(workdir, standin.url, ENGINE_DATABASE_URL=database, ENGINE_LOG_LEVEL="INFO")
    ).start()
    url = f"http://127.0.0.1:{engine.port}"
    try:
        assert httpx.get(url + "/readyz", timeout=10).status_code == 200
        proxy.down()
        down = httpx.get(url + "/readyz", timeout=10)
        assert down.status_code == 503 and down.headers["retry-after"]
        assert "store" in down.json()["failing"], down.json()
        refused = post(engine, payment_succeeded("e_during", "pay_during", utcnow()))
        assert refused.status_code == 503 and refused.headers["retry-after"]
        time.sleep(3)
        proxy.up()
        eventually(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200, within=15, what="ready again")
        assert post(engine, payment_succeeded("e_after", "pay_after", utcnow())).status_code == 202
        eventually(lambda: len(standin.requests) == 1, within=15, what="the receipt after recovery")
    finally:
        engine.stop()
        proxy.down()
    lines = log_lines(engine)
    assert any("not ready: store" in line for line in lines), "\n".join(lines)
    assert any("ready again: store" in line for line in lines), "\n".join(lines)
    assert len(lines) <= MAX_LOG_LINES, "\n".join(lines[-60:])
