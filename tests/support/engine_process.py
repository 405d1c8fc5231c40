"""The engine as real processes (`engine serve`, `engine worker`) in a scratch directory."""

from __future__ import annotations

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

    def start(self) -> "Engine":
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
