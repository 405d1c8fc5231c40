"""ingest_limit_ratio: POST /events throughput of the engine's hook divided by a handler that
answers 202 after one durable insert of the raw event; ingest_ratio: the same engine divided by
a bare Starlette handler that stores nothing (the old limit, reported without a target).

Three servers, each in its own process, all under uvicorn with `engine serve`'s own settings
(`engine.http.server.server_config`): the real `engine serve --no-worker` on a scratch store,
and the two limits of bench/servers.py (`durable` on a store of its own, opened by the engine's
own `engine.store.db.connect`, so with the same file settings or the same pool; `bare`). The
same load generator (bench/loadgen.py, `connections` keep-alive connections, closed loop)
drives them in alternating rounds, the order rotating every round; each side's best round
counts (the machine is noisy: the best round is the one least disturbed). Every request is one
event of the Estuary mix (the shipped rules' examples, with unique ids, times moved to now):
the engine parses it, checks it against its schema, plans, renders and commits before the 202.
A request the engine does not answer with 202 counts as a failure. Beside the wall figures,
the CPU each server process used per request (from /proc), which noise on a shared machine
disturbs less.

`--store pg`: the engine on PostgreSQL + Redis; the one-insert limit on scratch PostgreSQL
databases of its own, with the engine's pool, measured both on the event loop and on a pool
thread (the better counts: bench/servers.py says why).
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import loadgen
from .common import (
    PYTHON,
    REDIS_URL,
    ROOT,
    EventMaker,
    cpu_seconds,
    emit,
    engine_env,
    free_port,
    log,
    module_args,
    postgres_database,
    pyspy_phases,
    pyspy_start,
    pyspy_summary,
    scratch,
    stop_process,
    summary,
    wait_port,
)

SIDES = ("bare", "durable", "engine")
SIDES_PG = ("bare", "durable", "durable-thread", "engine")  # on PostgreSQL the better of two one-insert handlers counts


def start(kind: str, env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, int]:
    """One of the three servers, listening; `engine` is the installed `engine serve --no-worker`."""
    port = free_port()
    if kind == "engine":
        cmd = [str(Path(PYTHON).with_name("engine")), "serve", "--no-worker", "--port", str(port)]
    else:
        cmd = [PYTHON, "-m", "bench.servers", kind, "--port", str(port)]
    with open(workdir / f"{kind}.log", "w") as err:  # the server writes through its own descriptor
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=err, stderr=err)
    wait_port(port, proc)
    return proc, port


def rate_202(res: loadgen.Result) -> float:
    return res.ok(202) / res.elapsed if res.elapsed else 0.0


def measure(quick: bool, store: str, connections: int, pyspy: str | None) -> dict[str, Any]:
    from engine.rules.loader import load

    seconds, warmup, rounds = (3.0, 0.5, 2) if quick else (8.0, 1.0, 3)
    config = load(str(ROOT / "notifications.yaml"))
    maker = EventMaker(config, prefix=f"evt_ingest_{int(time.time())}")
    per_round = int((seconds + warmup) * 3000)  # more than a round of the engine or the durable limit can use
    log(f"ingest: preparing {per_round * rounds} events")
    bodies = [json.dumps(maker.make()).encode() for _ in range(per_round * rounds + 1)]
    sides = SIDES_PG if store == "pg" else SIDES
    rounds_of: dict[str, list[loadgen.Result]] = {side: [] for side in sides}
    with scratch() as workdir, ExitStack() as stack:
        envs: dict[str, dict[str, str]] = {}
        for side in sides:  # each on a store of its own
            if store == "pg":
                url = stack.enter_context(postgres_database()) if side != "bare" else ""
                extra = {"ENGINE_DATABASE_URL": url, "ENGINE_QUEUE_URL": REDIS_URL} if side == "engine" else {}
            else:
                url, extra = f"sqlite:///{workdir}/{side}.db", {}
            envs[side] = engine_env(workdir, BENCH_LIMIT_DATABASE_URL=url, **extra)
        procs: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            for side in sides:
                procs[side] = start(side, envs[side], workdir)
            warm = bodies.pop()
            for side in sides:  # one request each first (imports, first connection to the store)
                port = procs[side][1]
                loadgen.closed_loop(port, [loadgen.post("/events", warm, port)], 1, 1, 0)
            for r in range(rounds):
                chunk = bodies[r * per_round:(r + 1) * per_round]
                k = r % len(sides)
                order = sides[k:] + sides[:k]
                for side in order:
                    proc, port = procs[side]
                    spy = None
                    if pyspy and side == "engine" and r == rounds - 1:
                        spy = pyspy_start(proc.pid, seconds + warmup, pyspy)
                    requests = [loadgen.post("/events", b, port) for b in chunk]
                    cpu0 = cpu_seconds(proc.pid)
                    res = loadgen.closed_loop(port, requests, connections, seconds, warmup)
                    res.cpu = cpu_seconds(proc.pid) - cpu0  # type: ignore[attr-defined]
                    rounds_of[side].append(res)
                    log(f"ingest round {r + 1}: {side} {rate_202(res):.0f}/s, "
                        f"{1000 * res.cpu / max(1, res.sent):.2f} ms CPU/req "
                        f"{res.statuses} errors {res.errors}")  # type: ignore[attr-defined]
                    if spy is not None:
                        spy.wait(60)
                        Path(pyspy + ".summary.txt").write_text(pyspy_summary(pyspy) + "\n\n" + pyspy_phases(pyspy))
                        log(f"py-spy profile: {pyspy} (summary {pyspy}.summary.txt)")
        finally:
            for proc, _ in procs.values():
                stop_process(proc)
    best = {side: max(rounds_of[side], key=rate_202) for side in sides}
    rate = {side: rate_202(best[side]) for side in sides}
    cpu = {side: round(1000 * best[side].cpu / max(1, best[side].sent), 3) for side in sides}  # type: ignore[attr-defined]
    if store == "pg":
        way = max(("durable", "durable-thread"), key=lambda side: rate[side])
        best["durable"], rate["durable"], cpu["durable"] = best[way], rate[way], cpu[way]
        durable_rounds = {"durable_loop_rounds": [round(rate_202(r), 1) for r in rounds_of["durable"]],
                          "durable_thread_rounds": [round(rate_202(r), 1) for r in rounds_of["durable-thread"]]}
    else:
        way, durable_rounds = "durable", {}
    lat = summary([x * 1000 for x in best["engine"].latencies])
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {
        "store": "postgresql+redis" if store == "pg" else "sqlite",
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "bare_rps": round(rate["bare"], 1),
        "durable_rps": round(rate["durable"], 1),
        "engine_rps": round(rate["engine"], 1),
        "engine_non_202": sum(v for k, v in best["engine"].statuses.items() if k != 202) + best["engine"].errors,
        "durable_non_202": sum(v for k, v in best["durable"].statuses.items() if k != 202) + best["durable"].errors,
        # CPU each server used per request it was sent (its whole round, warm-up included)
        "engine_cpu_ms_per_request": cpu["engine"],
        "durable_cpu_ms_per_request": cpu["durable"],
        "bare_cpu_ms_per_request": cpu["bare"],
        "engine_cpu_busy": round(best["engine"].cpu / (seconds + warmup), 2),  # type: ignore[attr-defined]
        "engine_latency_ms": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in lat.items()},
        "bare_rounds": [round(rate_202(r), 1) for r in rounds_of["bare"]],
        "durable_rounds": [round(rate_202(r), 1) for r in rounds_of["durable"]],
        "durable_way": "on a pool thread" if way == "durable-thread" else "on the event loop",
        **durable_rounds,
        "engine_rounds": [round(rate_202(r), 1) for r in rounds_of["engine"]],
        "ingest_ratio": ratio(rate["engine"], rate["bare"]),
        "ingest_limit_ratio": ratio(rate["engine"], rate["durable"]),
        # the same comparison in CPU a request (durable / engine): what the engine would reach on a quiet core
        "ingest_limit_cpu_ratio": ratio(cpu["durable"], cpu["engine"]),
    }


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "pg"], default="sqlite")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--pyspy", metavar="FILE", help="py-spy the engine server during its last round (collapsed stacks)")
    args = p.parse_args()
    emit(measure(args.quick, args.store, args.connections, args.pyspy or args.profile))


if __name__ == "__main__":
    main()
