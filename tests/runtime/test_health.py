"""Liveness and readiness: /healthz reads nothing; /readyz checks the store, its schema, the queue and
the data files, answers 503 naming each failing check, and says so in the log once per change."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.health import DataFiles, Readiness, Trouble
from engine.http.app import build_app
from engine.queue import make_huey
from engine.store.db import connect

from .support import LiveServer, engine_env, eventually, free_port

CLOSED_PG = "postgresql+psycopg://postgres@127.0.0.1:1/test"


@pytest.fixture
def queue_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
    make_huey(url)  # creates the file and its tables, as `engine serve` does
    return url


@pytest.fixture
def rt(sqlite_url: str, queue_url: str, make_runtime: Any) -> Any:
    return make_runtime(sqlite_url, queue_url=queue_url)


@pytest.fixture
def http(rt: Any) -> Iterator[httpx.Client]:
    with LiveServer(build_app(rt)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_readyz_is_200_with_every_check(http: httpx.Client) -> None:
    r = http.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True and body["failing"] == []
    assert set(body["checks"]) == {"store", "schema", "queue", "files"}
    assert all(check["ok"] for check in body["checks"].values())


def test_a_store_that_does_not_answer_is_a_503_naming_it(rt: Any, queue_url: str) -> None:
    readiness = Readiness(connect(CLOSED_PG), queue_url)
    with LiveServer(build_app(rt, readiness)) as server:
        r = httpx.get(server.url + "/readyz", timeout=10)
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200  # liveness reads nothing
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert r.json()["failing"] == ["store", "schema"]
    assert "OperationalError" in r.json()["checks"]["store"]["detail"]


def test_a_schema_behind_the_migrations_is_not_ready(tmp_path: Path, queue_url: str) -> None:
    bare = connect(f"sqlite:///{tmp_path / 'bare.db'}")  # a database nobody migrated
    checks = Readiness(bare, queue_url).check()
    assert not checks["schema"].ok and "engine db upgrade" in checks["schema"].detail
    assert checks["store"].ok


def test_a_queue_that_does_not_answer_is_not_ready(rt: Any, tmp_path: Path) -> None:
    assert not Readiness(rt.store.engine, f"sqlite:///{tmp_path / 'none' / 'queue.db'}").check()["queue"].ok
    assert not Readiness(rt.store.engine, "redis://127.0.0.1:1/0").check()["queue"].ok


def test_a_redis_queue_that_answers_is_ready(rt: Any, redis_url: str) -> None:
    assert Readiness(rt.store.engine, redis_url).check()["queue"].ok


@pytest.mark.parametrize("fault", ["removed", "replaced"])
def test_a_database_file_removed_or_replaced_fails_readiness_loudly_once(
        rt: Any, queue_url: str, sqlite_url: str, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    readiness = Readiness(rt.store.engine, queue_url)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert readiness.check()["files"].ok
    moved = path.with_name("moved.db")
    os.rename(path, moved)
    if fault == "replaced":
        shutil.copy(moved, path)  # the same bytes, another file: what the engine writes now goes elsewhere
    with caplog.at_level(logging.ERROR, logger="engine.health"):
        for _ in range(5):
            checks = readiness.check()
    assert not checks["files"].ok and f"was {fault}" in checks["files"].detail
    loud = [r for r in caplog.records if "not ready: files" in r.getMessage()]
    assert len(loud) == 1, caplog.text
    if fault == "removed":
        os.rename(moved, path)
        assert readiness.check()["files"].ok


def make_unwritable(path: Path) -> Callable[[], None]:
    """Make `path` unwritable as a real fault does (`chattr +i`; as another user than root, a mode
    without write permission suffices); returns what undoes it. Skips where neither works."""
    if (
        shutil.which("chattr")
        and subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode == 0
    ):
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        return lambda: path.chmod(mode)
    pytest.skip("chattr +i is not permitted here, and root writes to files whatever their mode")


@pytest.mark.parametrize("side", ["", "-wal", "-shm"])
def test_a_database_file_that_cannot_be_written_fails_readiness_naming_it(tmp_path: Path, side: str) -> None:
    """The file itself, its write-ahead log, its shared-memory index: each found unwritable, and
    ready again once it is writable. Only the files are looked at (an unwritable -shm would kill a
    process that read the database: that is tests/reliability/test_fatal_signals.py)."""
    path = tmp_path / "engine.db"
    conn = sqlite3.connect(path)  # kept open: the -wal and -shm files exist while a connection does
    try:
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        files = DataFiles({"database": str(path)})
        assert files.check().ok
        undo = make_unwritable(Path(f"{path}{side}"))
        try:
            check = files.check()
        finally:
            undo()
        assert not check.ok and f"the database's {path}{side} cannot be written" in check.detail, check.detail
        assert ("SIGBUS" in check.detail) == (side == "-shm")
        assert files.check().ok
    finally:
        conn.close()


def test_a_data_folder_that_cannot_be_written_fails_readiness(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "engine.db").touch()
    files = DataFiles({"database": str(folder / "engine.db")})
    undo = make_unwritable(folder)
    try:
        check = files.check()
    finally:
        undo()
    assert not check.ok and f"{folder} (its folder) cannot be written" in check.detail, check.detail


def test_trouble_logs_once_per_state_change_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    trouble = Trouble("sweep", logging.getLogger("test.trouble"), base_s=0.1, cap_s=1.0)
    with caplog.at_level(logging.INFO, logger="test.trouble"):
        delays = [trouble.failed(OSError("disk I/O error")) for _ in range(1000)]
        trouble.ok()
        trouble.ok()
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and max(delays) == 1.0
    assert [r.getMessage() for r in caplog.records] == [
        "sweep failing: OSError: disk I/O error (1 time)", "sweep recovered after 1000 failures"]


def test_a_503_from_the_hook_carries_retry_after(rt: Any, tmp_path: Path) -> None:
    from engine.store.repository import Store

    rt.store = Store(connect(CLOSED_PG))
    with LiveServer(build_app(rt)) as server:
        r = httpx.post(server.url + "/events", json={"id": "e1", "type": "user.registered",
                                                     "occurred_at": "2026-03-01T10:00:00Z", "data": {
            "user": {"id": "u1", "email": "a@example.com", "name": "A", "timezone": "UTC", "role": "client"},
            "verification_url": "https://example.com/v"}}, timeout=30)
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()


def test_the_worker_serves_health_readiness_and_metrics(project: Path, tmp_path: Path) -> None:
    from .support import EngineProcess

    port = free_port()
    env = engine_env(
        ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}", ENGINE_QUEUE_URL=f"sqlite:///{tmp_path / 'wq.db'}"
    )
    proc = EngineProcess(["worker", "--metrics-port", str(port)], project, env, tmp_path / "worker.log")
    try:
        base = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(base + "/healthz"), within=30, what="the worker's health port")
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
        assert (
            "process_" in httpx.get(base + "/metrics", timeout=10).text
            or "python_" in httpx.get(base + "/metrics").text
        )
    finally:
        proc.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("variable, value, says", [
    ("ENGINE_DATABASE_URL", "mysql://u@127.0.0.1/db", "is not a database the engine can use"),
    ("ENGINE_DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/db", "is not a database the engine can use"),
    ("ENGINE_DATABASE_URL", "postgresql+psycopg://u:hunter2@127.0.0.1:1/db", "the database does not answer"),
])
def test_a_bad_or_unreachable_database_is_a_short_error_naming_the_variable(
        project: Path, variable: str, value: str, says: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "engine.cli.main", "stats"], cwd=project, capture_output=True,
                          text=True, env=engine_env(**{variable: value}), timeout=60)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(err) <= 2 and err[0].startswith(f"error: {variable}=") and says in err[0], done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_a_bad_queue_url_is_a_short_error_naming_the_variable(project: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = engine_env(ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'e.db'}", ENGINE_QUEUE_URL="amqp://127.0.0.1/")
    done = subprocess.run([sys.executable, "-m", "engine.cli.main", "worker"], cwd=project, capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: ENGINE_QUEUE_URL='amqp://127.0.0.1/' is not a queue the engine can use" in done.stderr


def test_a_queue_that_fails_around_a_task_is_reported_once_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """Redis going away while a task runs: the task has run, and Huey's bookkeeping after it (the
    revoke key's delete) fails. That is the queue failing: reported once, as the reads that fail
    after it are, and waited out; no traceback, and the next tasks run once it answers again."""
    import threading

    from huey import MemoryHuey

    from engine.queue import _RecoveringWorker

    refused = "Error 111 connecting to 127.0.0.1:6379. Connection refused."

    class GoesDown(MemoryHuey):  # type: ignore[misc]
        down = went_down = False

        def delete(self, key: str) -> bool:
            if not self.went_down:
                self.down = self.went_down = True  # while the first task ran
                raise ConnectionError(refused)
            return bool(super().delete(key))

        def dequeue(self) -> Any:
            if self.down:
                raise ConnectionError(refused)
            return super().dequeue()

    huey = GoesDown("goes-down", immediate=False)
    ran: list[int] = []
    task = huey.task()(lambda n: ran.append(n))
    for n in range(3):
        task(n)
    worker = _RecoveringWorker(huey, threading.Event(), 0.01, 0.01, 1.0)
    worker.trouble = Trouble("queue reads", logging.getLogger("test.queue"), base_s=0.001, cap_s=0.001)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            worker.loop()  # the first task runs, then its bookkeeping and two reads fail
        huey.down = False
        for _ in range(2):
            worker.loop()
    assert ran == [0, 1, 2]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [f"queue reads failing: ConnectionError: {refused} (1 time)",
                    "queue reads recovered after 3 failures"], said
    assert not any(r.exc_info for r in caplog.records if r.name != "test.queue")
