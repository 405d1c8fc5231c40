"""ingest_ratio: POST /events throughput of the engine's hook divided by a bare Starlette handler.

Both servers run under uvicorn with the same settings (bench/servers.py), each in its own
process, and the same load generator (bench/loadgen.py, `connections` keep-alive connections,
closed loop) drives them in alternating rounds; each side's best round is kept (the machine is
noisy: the best round is the one least disturbed). The engine is `engine serve --no-worker` on
a scratch SQLite store: every request is one event of the Estuary mix (the shipped rules'
examples, with unique ids), parsed, validated against its schema, matched, rendered and
committed before the 202. A request the engine does not answer with 202 counts as a failure.

`--store pg`: the same on PostgreSQL + Redis (reported, no target).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from . import loadgen
from .common import (PYTHON, REDIS_URL, ROOT, EventMaker, emit, engine_env, free_port, log, module_args,
                     postgres_database, pyspy_start, cpu_seconds, pyspy_summary, scratch, stop_process, summary, wait_port)


def start(kind: str, env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    err = open(workdir / f"{kind}.log", "w")
    proc = subprocess.Popen([PYTHON, "-m", "bench.servers", kind, "--port", str(port)], cwd=str(ROOT), env=env,
                            stdout=err, stderr=err)
    wait_port(port, proc)
    return proc, port


def measure(quick: bool, store: str, connections: int, pyspy: str | None) -> dict:
    from engine.rules.loader import load

    seconds, warmup, rounds = (3.0, 0.5, 1 if store == "pg" else 2) if quick else (8.0, 1.0, 3)
    config = load(str(ROOT / "notifications.yaml"), {})
    maker = EventMaker(config, prefix=f"evt_ingest_{int(time.time())}")
    per_round = int((seconds + warmup) * 2500)  # more than any round can use
    log(f"ingest: preparing {per_round * rounds} events")
    bodies = [json.dumps(maker.make()).encode() for _ in range(per_round * rounds)]
    with scratch() as workdir:
        extra: dict[str, str] = {}
        pg_ctx = postgres_database() if store == "pg" else None
        if pg_ctx is not None:
            extra = {"ENGINE_DATABASE_URL": pg_ctx.__enter__(), "ENGINE_QUEUE_URL": REDIS_URL}
        env = engine_env(workdir, **extra)
        bare, bare_port = start("bare", env, workdir)
        engine, engine_port = start("engine", env, workdir)
        try:
            # one request each first (imports, first connection to the store)
            loadgen.closed_loop(bare_port, [loadgen.post("/events", bodies[0], bare_port)], 1, 1, 0)
            bare_rounds, engine_rounds = [], []
            for r in range(rounds):
                chunk = bodies[r * per_round:(r + 1) * per_round]
                res = loadgen.closed_loop(bare_port, [loadgen.post("/events", b, bare_port) for b in chunk],
                                          connections, seconds, warmup)
                bare_rounds.append(res)
                log(f"ingest round {r + 1}: bare {res.rate:.0f}/s {res.statuses}")
                spy = None
                if pyspy and r == rounds - 1:
                    spy = pyspy_start(engine.pid, seconds + warmup, pyspy)
                requests = [loadgen.post("/events", b, engine_port) for b in chunk]
                cpu0 = cpu_seconds(engine.pid)
                res = loadgen.closed_loop(engine_port, requests, connections, seconds, warmup)
                res.cpu = cpu_seconds(engine.pid) - cpu0  # type: ignore[attr-defined]
                engine_rounds.append(res)
                log(f"ingest round {r + 1}: engine {res.rate:.0f}/s {res.statuses} errors {res.errors}")
                if spy is not None:
                    spy.wait(60)
                    Path(pyspy + ".summary.txt").write_text(pyspy_summary(pyspy))
                    log(f"py-spy profile: {pyspy} (summary {pyspy}.summary.txt)")
        finally:
            stop_process(engine)
            stop_process(bare)
            if pg_ctx is not None:
                pg_ctx.__exit__(None, None, None)
    best_bare = max(bare_rounds, key=lambda r: r.rate)
    best_engine = max(engine_rounds, key=lambda r: r.ok(202) / r.elapsed)
    engine_rate = best_engine.ok(202) / best_engine.elapsed
    lat = summary([x * 1000 for x in best_engine.latencies])
    return {
        "store": "postgresql+redis" if store == "pg" else "sqlite",
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "bare_rps": round(best_bare.rate, 1),
        "engine_rps": round(engine_rate, 1),
        "engine_non_202": sum(v for k, v in best_engine.statuses.items() if k != 202) + best_engine.errors,
        # CPU the engine server used per accepted request (its whole round, warm-up included)
        "engine_cpu_ms_per_request": round(1000 * best_engine.cpu / max(1, best_engine.sent), 2),
        "engine_cpu_busy": round(best_engine.cpu / (seconds + warmup), 2),
        "engine_latency_ms": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in lat.items()},
        "bare_rounds": [round(r.rate, 1) for r in bare_rounds],
        "engine_rounds": [round(r.ok(202) / r.elapsed, 1) for r in engine_rounds],
        "ingest_ratio": round(engine_rate / best_bare.rate, 4) if best_bare.rate else None,
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
