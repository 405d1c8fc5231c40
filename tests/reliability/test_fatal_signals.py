"""A fatal signal is not a silent death: `engine serve` and `engine worker` print the signal and
where every thread was (faulthandler) before the process dies. The real case: the SQLite `-shm`
file made immutable under a running `engine serve` (`chattr +i`) is named by readiness and in the
log as soon as the file watch sees it, and the SIGBUS that follows at the next read of the
database says where it struck."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from engine.clock import utcnow
from tests.runtime.support import booking_confirmed, eventually
from tests.support.engine_process import Engine, copy_config, engine_env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)


def output(engine: Engine) -> str:
    return engine.log.read_text(errors="replace")


def died_of_sigbus(engine: Engine) -> None:
    assert engine.proc is not None
    engine.proc.wait(15)
    assert engine.proc.returncode == -signal.SIGBUS, output(engine)[-3000:]
    text = output(engine)
    assert "Fatal Python error: Bus error" in text, text[-3000:]
    assert "most recent call first" in text, text[-3000:]  # a stack, not only the signal's name


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_fatal_signal_prints_the_signal_and_the_stacks(workdir: Path, command: str) -> None:
    engine = Engine(workdir, engine_env(workdir, "http://127.0.0.1:9", ENGINE_LOG_LEVEL="INFO"), command)
    engine.extra = ["--metrics-port", str(engine.port)] if command == "worker" else []
    engine.start()
    try:
        eventually(lambda: answering(engine), within=30, what=f"engine {command} answering")
        assert engine.proc is not None
        os.kill(engine.proc.pid, signal.SIGBUS)
        died_of_sigbus(engine)
        assert "Thread 0x" in output(engine) or "Current thread 0x" in output(engine)
    finally:
        engine.stop()


def test_an_immutable_shm_file_is_named_before_the_sigbus_and_the_sigbus_says_where(workdir: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    # A long sweep interval: nothing reads the database until the test posts an event. (A busy engine
    # touches it sooner than the watch looks: then only the SIGBUS report says where it struck.)
    engine = Engine(workdir, engine_env(workdir, "http://127.0.0.1:9", ENGINE_LOG_LEVEL="INFO",
                                        ENGINE_SWEEP_INTERVAL="60")).start()
    shm = workdir / "engine.db-shm"
    frozen = False
    try:
        url = f"http://127.0.0.1:{engine.port}"
        assert httpx.get(url + "/readyz", timeout=10).status_code == 200  # the schema is read (and kept) now
        assert shm.exists()
        time.sleep(1.5)  # the WAL checkpoint (every 0.5 s, when the WAL changed) has caught up with the start's writes
        frozen = subprocess.run(["chattr", "+i", str(shm)], capture_output=True, check=False).returncode == 0
        if not frozen:
            pytest.skip("chattr +i is not permitted here (needs root and a file system that supports it)")
        eventually(lambda: "not ready: files" in output(engine), within=5, what="the file watch naming the -shm file")
        line = next(line for line in output(engine).splitlines() if "not ready: files" in line)
        assert f"{shm} cannot be written" in line and "SIGBUS" in line, line
        now = utcnow()
        # the hook reads the database: SQLite touches the -shm file, and the process dies
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url + "/events", json=booking_confirmed("evt_1", "bk_1", now, now), timeout=10)
        died_of_sigbus(engine)
        assert "engine/" in output(engine).split("Fatal Python error: Bus error", 1)[1]  # the engine's frames
    finally:
        if frozen:
            subprocess.run(["chattr", "-i", str(shm)], check=True)
        engine.stop()


def answering(engine: Engine) -> bool:
    assert engine.proc is not None and engine.proc.poll() is None, output(engine)[-3000:]
    try:
        return httpx.get(f"http://127.0.0.1:{engine.port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
