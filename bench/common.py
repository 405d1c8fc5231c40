"""What the benchmark modules share: paths, runtimes on scratch stores, event generation,
statistics, RSS, child processes and the one-JSON-line result protocol.

Each figure runs in its own child process (`python -m bench.<module>`), so that memory,
module globals (`engine.queue._runtime`), threads and the GIL of one measurement never leak
into the next. A module prints progress on stderr and ONE JSON object as its last stdout line.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "notifications.yaml")
PYTHON = sys.executable
COURIER_TOKEN = "bench-token"
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

# The uvicorn settings of `engine serve` (engine/cli/serve.py); every server the benchmarks
# compare runs with exactly these.
UVICORN = {"host": "127.0.0.1", "log_level": "warning", "access_log": False}


def log(*parts: Any) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- results -----------------------------------------------------------------------------------
def module_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="the short run (python -m bench --quick)")
    p.add_argument(
        "--profile", metavar="FILE", help="also write a pyinstrument profile of the engine side to FILE (.html or .txt)"
    )
    return p


def emit(result: dict[str, Any]) -> None:
    """The module's answer: one JSON object, the last line on stdout."""
    sys.stdout.flush()
    print(json.dumps(result, default=str), flush=True)


# -- statistics ---------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), nearest-rank on sorted values; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": min(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values), "mean": statistics.fmean(values)}


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size from /proc (MiB)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- scratch places ------------------------------------------------------------------------------
@contextmanager
def scratch(prefix: str = "bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a child this benchmark started (by its own handle, never by name)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- the engine on scratch stores ------------------------------------------------------------------
def settings(workdir: Path, database_url: str | None = None, queue_url: str | None = None, **overrides: Any):
    from engine.settings import Settings

    return Settings(config_path=CONFIG, database_url=database_url or f"sqlite:///{workdir}/engine.db",
                    queue_url=queue_url or f"sqlite:///{workdir}/queue.db", **overrides)


def runtime(workdir: Path, database_url: str | None = None, backend: Any = None, **overrides: Any):
    from engine.runtime import Runtime

    return Runtime.create(settings(workdir, database_url, **overrides), {}, backend=backend)


def engine_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of an engine child process on scratch stores, no Courier token (outbox)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENGINE_", "COURIER_"))}
    env.update(ENGINE_CONFIG=CONFIG, ENGINE_DATABASE_URL=f"sqlite:///{workdir}/engine.db",
               ENGINE_QUEUE_URL=f"sqlite:///{workdir}/queue.db", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


# -- events ------------------------------------------------------------------------------------------
def _shift(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and value[10:11] == "T":
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if when.tzinfo is not None:
            return (when + delta).isoformat()
    return value


def _vary(value: Any, i: int, people: int) -> Any:
    """Make the ids of an example unique per event (people come from a pool of `people`)."""
    if isinstance(value, dict):
        suffix = f"_{i % people}" if "email" in value else f"_{i}"
        out = {k: _vary(v, i, people) for k, v in value.items()}
        if isinstance(out.get("id"), str):
            out["id"] = value["id"] + suffix
        if "email" in value and isinstance(value["email"], str):
            user, _, host = value["email"].partition("@")
            out["email"] = f"{user}+{i % people}@{host}"
        if isinstance(out.get("conversation_id"), str):
            out["conversation_id"] = value["conversation_id"] + f"_{i}"
        return out
    if isinstance(value, list):
        return [_vary(v, i, people) for v in value]
    return value


def example_events(config: Any) -> list[dict[str, Any]]:
    """The example event of every shipped rule (the Estuary mix), deduplicated, stable order."""
    seen, out = set(), []
    for rule in config.notifications.values():
        ex = rule.example
        if ex is None or ex.id in seen:
            continue
        seen.add(ex.id)
        out.append({"id": ex.id, "type": ex.type, "occurred_at": ex.occurred_at, "data": copy.deepcopy(dict(ex.data))})
    return out


class EventMaker:
    """Realistic events: the shipped examples in turn, with unique ids and their times moved
    so that each occurs `now` (reminders land in the future, as in production)."""

    def __init__(
        self, config: Any, prefix: str = "evt_bench", people: int = 1000, types: tuple[str, ...] | None = None
    ):
        self.examples = [e for e in example_events(config) if types is None or e["type"] in types]
        self.prefix = prefix
        self.people = people
        self.i = 0

    def make(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        ex = self.examples[self.i % len(self.examples)]
        occurred = datetime.fromisoformat(ex["occurred_at"].replace("Z", "+00:00"))
        delta = now - occurred
        event = {"id": f"{self.prefix}_{self.i}", "type": ex["type"], "occurred_at": now.isoformat(),
                 "data": _vary(_shift(ex["data"], delta), self.i, self.people)}
        self.i += 1
        return event

    def batch(self, n: int, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or utcnow()
        return [self.make(now) for _ in range(n)]


# -- the Courier stand-in in a child process ------------------------------------------------------------
class Standin:
    """tests/support/courier_standin.py, served by a child process (`python -m bench.standin`), so
    that neither side of a dispatch measurement shares a GIL with it."""

    def __init__(self, latency: float = 0.0):
        self.proc = subprocess.Popen([PYTHON, "-m", "bench.standin", "--latency", str(latency)], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            stop_process(self.proc)
            raise RuntimeError(f"the stand-in did not start: {line!r}")
        self.url = line

    def command(self, text: str) -> Any:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def arrivals(self) -> dict[str, float]:
        """Idempotency-Key -> wall-clock time (time.time()) the first send with it arrived."""
        return self.command("arrivals")

    def count(self) -> int:
        return self.command("count")

    def reset(self) -> None:
        self.command("reset")

    def close(self) -> None:
        with suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)

    def __enter__(self) -> Standin:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- PostgreSQL and Redis for the "at scale" extras -------------------------------------------------------
_DATABASES = itertools.count()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A scratch database on the PostgreSQL server of BENCH_POSTGRES_URL (dropped afterwards), so the
    benchmark never touches the tables the tests use."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    name = f"bench_{os.getpid()}_{int(time.time())}_{next(_DATABASES)}"  # two at once in one process get two names
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def profiler(path: str | None):
    """A pyinstrument profiler (or a stand-in that does nothing) for `--profile FILE`."""
    if not path:
        class _None:
            def start(self) -> None: ...
            def stop(self) -> None: ...
            def write(self) -> None: ...
        return _None()
    from pyinstrument import Profiler

    class _Prof:
        def __init__(self) -> None:
            self.p = Profiler(interval=0.0005, async_mode="disabled")

        def start(self) -> None:
            self.p.start()

        def stop(self) -> None:
            self.p.stop()

        def write(self) -> None:
            text = self.p.output_html() if path.endswith(".html") else self.p.output_text(unicode=True, show_all=False)
            Path(path).write_text(text)
            log("profile written to", path)
    return _Prof()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# -- py-spy (for servers and workers, whose work runs on threads pyinstrument does not see) ----------------
def pyspy_start(pid: int, seconds: float, out: str, rate: int = 250) -> subprocess.Popen:
    """Sample every thread of `pid` for `seconds` into collapsed stacks at `out` (py-spy raw)."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", str(rate),
            "--format", "raw", "--threads", "--subprocesses", "--nonblocking", "-o", out]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


IDLE_LEAVES = ("wait (threading.py", "select (selectors.py", "_worker (concurrent", "run (uvicorn",
               "_run_once (asyncio", "serve_forever", "sleep", "get (queue.py", "acquire", "readinto (socket.py",
               "poll (selectors.py", "recv_into", "_wait_for_tstate_lock")


def pyspy_summary(path: str, top: int = 30, only: str | None = None) -> str:
    """Inclusive and self share of samples per function, from py-spy's collapsed stacks.

    Idle threads (waiting in a lock, a selector or a socket read) are dropped first, so the
    shares are of the time the process spent doing something. `only` keeps stacks whose text
    contains it (e.g. "runtime.py" for the engine's own work)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for frames, n in _busy_stacks(path):
        if only and not any(only in f for f in frames):
            continue
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
    if not total:
        return "(no busy samples)"
    lines = [f"busy samples: {total}", "inclusive:"]
    for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {f}")
    lines.append("self:")
    for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {f}")
    return "\n".join(lines)


# Where a busy sample of the ingest path goes. The innermost frame that matches a pattern names
# the sample's phase, and within one frame the later phase of the list (the more specific) wins:
# rendering inside planning is rendering, the commit inside the store's write is the commit.
INGEST_PHASES: list[tuple[str, tuple[str, ...]]] = [
    (
        "HTTP: uvicorn, h11, Starlette, the event loop, the answer",
        ("uvicorn/", "h11/", "starlette/", "asyncio/", "selectors.py"),
    ),
    (
        "request id, metrics, logging",
        ("engine/http/request_id.py", "prometheus_client/", "logging/", "engine/metrics.py", "engine/logs.py"),
    ),
    ("reading the body, credentials", ("read_body (engine/http/body.py", "engine/http/auth.py", "ipaddress.py")),
    (
        "parsing JSON, formats",
        (
            "parse_json (engine/http/body.py",
            "_parse_slowly (engine/http/body.py",
            "json/decoder.py",
            "json/__init__.py",
            "engine/http/formats.py",
        ),
    ),
    (
        "hand-off to the intake thread and back",
        ("engine/http/intake.py", "threading.py", "call_soon_threadsafe", "_write_to_self", "Future.set_result"),
    ),
    ("planning: matching, timing, decide", ("engine/core/", "engine/rules/", "croniter/", "zoneinfo")),
    (
        "schema checks (Runtime.parse)",
        (
            "Runtime.parse (engine/runtime.py",
            "engine/rules/json_schema.py",
            "engine/rules/event_schema.py",
            "jsonschema/",
            "engine/core/events.py",
        ),
    ),
    (
        "rendering: templates, expressions, the Courier message",
        (
            "engine/rules/expressions/",
            "engine/rules/budget.py",
            "engine/rules/guards.py",
            "jinja2/",
            "engine/core/rendering.py",
        ),
    ),
    (
        "store: statements (events, sends, recipients, digests, savepoints)",
        ("engine/store/", "sqlalchemy/", "psycopg/"),
    ),
    (
        "store: encoding payloads",
        ("engine/store/codec.py", "to_json (engine/jsontext.py", "from_json (engine/jsontext.py", "json/encoder.py"),
    ),
    # The write transaction's own frame is on the stack only while it opens or commits (its body runs
    # in the caller's frames): any line of it is BEGIN or COMMIT, whatever line the commit moves to.
    (
        "store: BEGIN, COMMIT, WAL checkpoints",
        ("Statements.begin (", "_cursor (engine/store/transactions.py:", "engine/store/checkpoint.py", ".commit ("),
    ),
]


def pyspy_phases(path: str, phases: list[tuple[str, tuple[str, ...]]] | None = None) -> str:
    """The busy samples of a py-spy profile by phase of the ingest path (INGEST_PHASES); the
    innermost frame that matches a phase's patterns names the sample's phase."""
    phases = phases or INGEST_PHASES
    counts: dict[str, int] = {}
    total = 0
    for stack, n in _busy_stacks(path):
        found = "other"
        for frame in stack:
            for name, patterns in phases:
                if any(p in frame for p in patterns):
                    found = name
        counts[found] = counts.get(found, 0) + n
        total += n
    if not total:
        return "(no busy samples)"
    lines = [f"by phase (busy samples: {total}):"]
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(lines)


def _busy_stacks(path: str) -> Iterator[tuple[list[str], int]]:
    """(frames root first, samples) of py-spy's collapsed stacks, idle threads left out."""
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames and not any(frames[-1].startswith(leaf) or leaf in frames[-1] for leaf in IDLE_LEAVES):
            yield frames, int(count)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
