"""The engine as real processes (`engine serve`, `engine worker`) in a scratch directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """`engine serve` or `engine worker` as a real process in a scratch directory."""

    def __init__(self, workdir: Path, env: dict[str, str], command: str = "serve"):
        self.workdir, self.env, self.command = workdir, env, command
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{command}.log"
        self.extra: list[str] = []

    def start(self) -> Engine:
        args = [sys.executable, "-m", "engine.cli.main", self.command]
        if self.command == "serve":
            args += ["--port", str(self.port)]
        args += self.extra
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=self.workdir, env=self.env, stdout=log, stderr=log)
        if self.command == "serve":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    time.sleep(0.1)
            raise AssertionError(f"engine serve did not start:\n{self.log.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


ROOT = Path(__file__).resolve().parents[2]


def copy_config(dest: Path) -> Path:
    """notifications.yaml, rules/ and templates_map/ of this repository, copied into `dest`."""
    for name in ("notifications.yaml", "rules", "templates_map"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def engine_env(workdir: Path, courier_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without ENGINE_*/COURIER_* settings, plus a SQLite store and
    queue in `workdir`, the Courier stand-in, quick sweeps, and `settings` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "COURIER_"))}
    env.update({
        "ENGINE_DATABASE_URL": f"sqlite:///{workdir}/engine.db",
        "ENGINE_QUEUE_URL": f"sqlite:///{workdir}/queue.db",
        "COURIER_AUTH_TOKEN": "tok",
        "COURIER_BASE_URL": courier_url,
        "COURIER_TIMEOUT": "1",
        "ENGINE_SWEEP_INTERVAL": "0.1",
        "ENGINE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    env.update(settings)
    return env
