"""deploy/: the Dockerfile, compose.yaml and the systemd units, read as their tools read them and
run as they would run them, against the local PostgreSQL and Redis and the Courier stand-in.

Images cannot be built here, so each file's commands and environment are taken from the file and
started as processes. What differs from a container or a unit is only where things are: the
services' addresses (postgres:5432, redis:6379 become the test's database schema and Redis
database), the ports (free ones, since several engines share this machine), the bind address
(loopback), /srv/engine (a copy of the configuration) and the engine's own path (this venv's).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.runtime.conftest import pg_url, redis_url, standin  # noqa: F401  (fixtures)
from tests.support.courier_standin import CourierStandin
from tests.support.engine_process import copy_config, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENGINE = str(Path(sys.executable).parent / "engine")  # the console script pip installed
INGEST_TOKEN = "deploy-ingest-token"


# -- reading the files ---------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docker_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            found.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return found


def interpolate(value: str, given: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if given.get(name):
            return given[name]
        if op == ":?":
            raise AssertionError(f"compose refuses to start without {name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  (systemd keys are case-sensitive)
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


# -- running them ----------------------------------------------------------------------------------------
class Processes:
    def __init__(self, workdir: Path):
        self.workdir, self.running = workdir, []  # type: ignore[var-annotated]

    def start(self, argv: list[str], env: Mapping[str, str], name: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:  # the process writes through its own descriptor
            proc = subprocess.Popen(argv, cwd=self.workdir, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running.append((name, proc))
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.workdir / f"{name}.log").read_text()[-2000:] for name, _ in self.running
        )

    def stop(self) -> dict[str, int]:
        codes = {}
        for _, proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.running:
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait(5)
        return codes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    work = tmp_path / "srv-engine"
    work.mkdir()
    copy_config(work)
    running = Processes(work)
    yield running
    running.stop()


def on_this_machine(env: Mapping[str, str], workdir: Path, pg: str, redis: str) -> dict[str, str]:
    """The file's environment with the services' addresses and /srv/engine of this machine."""
    assert env["ENGINE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["ENGINE_QUEUE_URL"].startswith("redis://")
    out = {k: str(v).replace("/srv/engine", str(workdir)) for k, v in env.items()}
    return {**out, "ENGINE_DATABASE_URL": pg, "ENGINE_QUEUE_URL": redis, "ENGINE_SWEEP_INTERVAL": "0.1"}


def with_port(argv: list[str], option: str, port: int) -> list[str]:
    argv = list(argv)
    argv[argv.index(option) + 1] = str(port)
    return argv


def loopback(argv: list[str]) -> list[str]:
    return [("127.0.0.1" if a == "0.0.0.0" else a) for a in argv]


def wait_for(url: str, procs: Processes, within: float = 40) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200:\n{procs.logs()}")


def post_and_see_it_delivered(hook: str, standin: CourierStandin, procs: Processes) -> None:
    from datetime import timedelta

    from engine.clock import utcnow
    from tests.runtime.support import booking_confirmed

    now = utcnow()
    event = booking_confirmed("evt_deploy", "bk_deploy", now + timedelta(days=3), now)
    answer = httpx.post(f"{hook}/events", json=event, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}, timeout=10)
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        templates = {r["body"]["message"]["template"] for r in standin.requests}
        if {"CLIENT_BOOKING_CONFIRMATION_V1", "PRACTITIONER_BOOKING_NOTIFICATION_V1"} <= templates:
            return
        time.sleep(0.1)
    raise AssertionError(f"not delivered to Courier (saw {standin.requests!r}):\n{procs.logs()}")


# -- the Dockerfile ------------------------------------------------------------------------------------------
def test_the_dockerfile_builds_on_the_official_slim_image_as_a_non_root_user() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    [user] = [args for instruction, args in steps if instruction == "USER"]
    assert user not in ("root", "0")
    [install] = [args for instruction, args in steps if instruction == "RUN" and "pip install" in args]
    extras = re.search(r'\.\[([\w,]+)\]', install).group(1).split(",")  # type: ignore[union-attr]
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) == {"postgres", "redis"} <= set(declared)
    copied = [args.split()[-2] for instruction, args in steps if instruction == "COPY"]
    assert all((ROOT / c).exists() for c in copied), copied
    [cmd] = [json.loads(args) for instruction, args in steps if instruction == "CMD"]
    assert cmd[:2] == ["engine", "serve"]
    [check] = [args for instruction, args in steps if instruction == "HEALTHCHECK"]
    assert "/healthz" in check and "CMD [" in check


# -- compose.yaml ---------------------------------------------------------------------------------------------
def test_compose_has_the_hook_two_workers_postgres_and_redis_with_healthchecks() -> None:
    services = compose()["services"]
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["serve"][:2] == ["engine", "serve"]
    workers = [name for name, c in commands.items() if c and c[:2] == ["engine", "worker"]]
    assert len(workers) == 2
    assert sum("--no-periodic" in commands[w] for w in workers) == 1  # one daily cleanup, not two
    assert services["postgres"]["image"].startswith("postgres:") and services["redis"]["image"].startswith("redis:")
    for name in ("postgres", "redis", *workers):
        assert services[name]["healthcheck"]["test"], name
    for name in ("serve", *workers):
        assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "redis": {"condition": "service_healthy"}}
        assert {"ENGINE_DATABASE_URL", "ENGINE_QUEUE_URL", "ENGINE_INGEST_TOKEN", "COURIER_AUTH_TOKEN"} <= set(
            services[name]["environment"])
    with pytest.raises(AssertionError, match="ENGINE_INGEST_TOKEN"):
        interpolate(services["serve"]["environment"]["ENGINE_INGEST_TOKEN"], {})


def test_compose_commands_and_environment_deliver_an_event(processes: Processes, pg_url: str, redis_url: str,
                                                           standin: CourierStandin) -> None:
    services = compose()["services"]
    given = {"ENGINE_INGEST_TOKEN": INGEST_TOKEN, "ENGINE_SECRET_KEY": "deploy-secret",
             "COURIER_AUTH_TOKEN": standin.token, "COURIER_BASE_URL": standin.url}
    image_env = docker_env()

    def env_of(name: str) -> dict[str, str]:
        file_env = {k: interpolate(str(v), given) for k, v in services[name]["environment"].items()}
        return on_this_machine({**image_env, **file_env}, processes.workdir, pg_url, redis_url)

    hook_port = free_port()
    serve = loopback(with_port(services["serve"]["command"], "--port", hook_port))
    processes.start([ENGINE, *serve[1:]], env_of("serve"), "serve")
    wait_for(f"http://127.0.0.1:{hook_port}/healthz", processes)
    worker_ports = {}
    for name, service in services.items():
        command = service.get("command") or []
        if command[:2] == ["engine", "worker"]:
            worker_ports[name] = free_port()
            argv = loopback(with_port(command, "--metrics-port", worker_ports[name]))
            processes.start([ENGINE, *argv[1:]], env_of(name), name)
    for name, port in worker_ports.items():
        wait_for(f"http://127.0.0.1:{port}/readyz", processes)
        probe = services[name]["healthcheck"]["test"][1:]  # after "CMD"
        probe = [a.replace(":9100/", f":{port}/") for a in probe]
        assert subprocess.run([sys.executable, *probe[1:]], timeout=10).returncode == 0
    wait_for(f"http://127.0.0.1:{hook_port}/readyz", processes)
    [check] = [args for instruction, args in dockerfile() if instruction == "HEALTHCHECK"]
    image_probe = [a.replace(":8000/", f":{hook_port}/") for a in json.loads(check.split("CMD", 1)[1])]
    assert image_probe[0] == "python" and subprocess.run([sys.executable, *image_probe[1:]], timeout=10).returncode == 0
    post_and_see_it_delivered(f"http://127.0.0.1:{hook_port}", standin, processes)
    assert set(processes.stop().values()) == {0}, processes.logs()


# -- systemd ----------------------------------------------------------------------------------------------------
def test_the_units_run_as_a_service_user_with_the_environment_file_and_restart() -> None:
    for name in ("engine-serve.service", "engine-worker@.service"):
        service = unit(name)["Service"]
        assert service["User"] == "engine" and service["EnvironmentFile"] == "/etc/engine/engine.env"
        assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
        assert unit(name)["Install"]["WantedBy"] == "multi-user.target"
    example = (DEPLOY / "systemd" / "engine.env.example").read_text()
    assert "ENGINE_DATABASE_URL=" in example and "ENGINE_QUEUE_URL=" in example


def test_the_units_exec_start_with_the_environment_file_deliver_an_event(
    processes: Processes, pg_url: str, redis_url: str, standin: CourierStandin
) -> None:
    lines = (DEPLOY / "systemd" / "engine.env.example").read_text().splitlines()
    file_env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    file_env.update(ENGINE_INGEST_TOKEN=INGEST_TOKEN, ENGINE_SECRET_KEY="deploy-secret",
                    COURIER_AUTH_TOKEN=standin.token, COURIER_BASE_URL=standin.url)
    env = on_this_machine(file_env, processes.workdir, pg_url, redis_url)
    venv_engine = "/srv/engine/.venv/bin/engine"

    hook_port = free_port()
    serve = shlex.split(unit("engine-serve.service")["Service"]["ExecStart"].replace(venv_engine, ENGINE))
    processes.start(with_port(serve, "--port", hook_port), env, "engine-serve")
    wait_for(f"http://127.0.0.1:{hook_port}/readyz", processes)
    worker = unit("engine-worker@.service")["Service"]["ExecStart"].replace(venv_engine, ENGINE)
    for instance in ("1", "2"):
        port = free_port()
        argv = shlex.split(worker.replace("%i", instance).replace(f"910{instance}", str(port)))
        assert shutil.which(argv[0]), argv
        processes.start(argv, env, f"engine-worker@{instance}")
        wait_for(f"http://127.0.0.1:{port}/readyz", processes)
    post_and_see_it_delivered(f"http://127.0.0.1:{hook_port}", standin, processes)
    assert set(processes.stop().values()) == {0}, processes.logs()
