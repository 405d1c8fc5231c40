"""ingest_batch100_ratio: events per second the engine's hook stores when heavy users post
batches of 100 events (`{"events": [...]}`), divided by the persist limit for those very events.

The engine is the real `engine serve --no-worker` on a scratch SQLite store, under the load
generator of bench/loadgen.py (`connections` keep-alive connections, closed loop), every
request a batch of 100 events of the Estuary mix (unique ids, times moved to now): each is
parsed, checked, planned, rendered and committed before the 202. The limit, measured right
after each engine round on the rows that round wrote: raw sqlite3 `executemany` of every row of
every table the engine wrote (bench/persist.py: events, recipients, notifications, history,
digests), one transaction, into a copy of the engine's database as it was before the round
(the same schema and size, so the same index depths, and the rows earlier rounds wrote that new
ones refer to), opened with the engine's settings; its
events per second is the number of events the round stored over that time. The two sides
alternate round by round and the best round of each counts. Beside the wall figure, the CPU
of the engine server per event.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from . import loadgen
from .common import ROOT, EventMaker, cpu_seconds, emit, engine_env, log, module_args, scratch, stop_process, summary
from .ingest import start
from .persist import last_rowids, raw_round, read_tables

BATCH = 100


def copy_database(db: str, to: Path) -> None:
    """A copy of the database at `db` as it is now (SQLite's online backup)."""
    src, dst = sqlite3.connect(db), sqlite3.connect(str(to))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    from engine.rules.loader import load

    # Only answers started and finished inside a round count, and a batch can take 1-2 s on a loaded
    # machine: a round lasts several of them.
    seconds, warmup, rounds = (6.0, 1.0, 2) if args.quick else (10.0, 2.0, 3)
    config = load(str(ROOT / "notifications.yaml"))
    maker = EventMaker(config, prefix=f"evt_batch_{int(time.time())}")
    per_round = int((seconds + warmup) * 50)  # batches: more than a round can use (5 000 events/s)
    log(f"batch: preparing {per_round * rounds + 1} batches of {BATCH} events")
    bodies = [json.dumps({"events": maker.batch(BATCH)}).encode() for _ in range(per_round * rounds + 1)]
    engine_rates, raw_rates, cpu_ms, latencies, raw_cpu = [], [], [], [], []
    with scratch() as workdir:
        proc, port = start("engine", engine_env(workdir), workdir)
        db = str(workdir / "engine.db")
        try:
            loadgen.closed_loop(port, [loadgen.post("/events", bodies.pop(), port)], 1, 1, 0)
            for r in range(rounds):
                before = last_rowids(db)
                copy_database(db, workdir / f"raw{r}.db")
                requests = [loadgen.post("/events", b, port) for b in bodies[r * per_round:(r + 1) * per_round]]
                cpu0 = cpu_seconds(proc.pid)
                res = loadgen.closed_loop(port, requests, args.connections, seconds, warmup)
                cpu = cpu_seconds(proc.pid) - cpu0
                time.sleep(0.5)  # requests started before the deadline finish and commit
                engine_rates.append(res.ok(202) * BATCH / res.elapsed)
                cpu_ms.append(1000 * cpu / max(1, res.sent * BATCH))
                latencies.append(res.latencies)
                tables = read_tables(db, after=before)
                stored = len(tables["events"][1])
                elapsed, used = raw_round(workdir / f"raw{r}.db", tables)
                raw_rates.append(stored / elapsed)
                raw_cpu.append(1000 * used / max(1, stored))
                log(f"batch round {r + 1}: engine {engine_rates[-1]:.0f} events/s ({cpu_ms[-1]:.3f} ms CPU/event, "
                    f"{res.statuses}), raw all tables {raw_rates[-1]:.0f} events/s ({stored} events, "
                    f"{sum(len(rows) for _, rows in tables.values())} rows)")
        finally:
            stop_process(proc)
    best = engine_rates.index(max(engine_rates))
    lat = summary([x * 1000 for x in latencies[best]])
    out: dict[str, Any] = {
        "batch_events": BATCH,
        "connections": args.connections,
        "seconds": seconds,
        "rounds": rounds,
        "engine_events_per_s": round(max(engine_rates), 1),
        "raw_all_events_per_s": round(max(raw_rates), 1),
        "engine_rounds": [round(x, 1) for x in engine_rates],
        "raw_rounds": [round(x, 1) for x in raw_rates],
        "engine_cpu_ms_per_event": round(cpu_ms[best], 4),
        "raw_all_cpu_ms_per_event": round(min(raw_cpu), 4),
        "engine_latency_ms": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in lat.items()},
        "ingest_batch100_ratio": round(max(engine_rates) / max(raw_rates), 4),
    }
    emit(out)


if __name__ == "__main__":
    main()
