"""persist_ratio: notification rows per second through the engine's write path (Store.ingest,
which runs _insert_sends) divided by raw sqlite3.executemany of the same rows in one transaction.

Events of the Estuary mix are parsed and decided beforehand (not timed); Store.ingest then
writes them in batches of 1 000 events, one transaction per batch, as a full POST /events
batch would. The limit: the very rows the engine wrote, read back as tuples, inserted with
sqlite3 `executemany` into the notifications table of a fresh database with the same schema
(the engine's migrations, so the same indexes) and the same pragmas (WAL, synchronous=NORMAL),
all in one transaction. Each side gets fresh files every round; the best round of each counts.

Also reported (no target): the same write path with one event per transaction (what each
single-event POST /events costs), and what else one batch writes (events, history, recipients).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .common import EventMaker, emit, log, module_args, profiler, runtime, scratch, utcnow

BATCH = 1000


def prepared(rt, n: int):
    from engine.core.decide import decide

    maker = EventMaker(rt.config, prefix=f"evt_persist_{int(time.time())}")
    now = utcnow()
    events = rt.parse(maker.batch(n, now))
    renderer = rt.renderer(now)
    return now, [(e, decide(rt.config, e, now, renderer)) for e in events]


def engine_round(workdir: Path, batch, now, prof=None) -> tuple[float, int, str]:
    rt = runtime(workdir)
    t0 = time.perf_counter()
    if prof:
        prof.start()
    for i in range(0, len(batch), BATCH):
        rt.store.ingest(batch[i:i + BATCH], now)
    if prof:
        prof.stop()
    elapsed = time.perf_counter() - t0
    rows = sum(rt.store.counts_by_status().values())
    rt.store.engine.dispose()
    return elapsed, rows, str(workdir / "engine.db")


def raw_round(workdir: Path, rows: list[tuple], columns: list[str]) -> float:
    from engine.store.db import connect, upgrade

    url = f"sqlite:///{workdir}/raw.db"
    engine = connect(url)
    upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(str(workdir / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = f"INSERT INTO notifications ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def read_rows(db: str) -> tuple[list[str], list[tuple]]:
    conn = sqlite3.connect(db)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(notifications)") if r[1] != "id"]
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM notifications ORDER BY id").fetchall()
    other = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
             for t in ("events", "notification_history", "recipients", "digest_items")}
    conn.close()
    return columns, rows, other


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    args = p.parse_args()
    n, rounds, single_n = (3000, 2, 400) if args.quick else (12000, 3, 1500)
    prof = profiler(args.profile)
    with scratch() as base:
        setup = runtime(base / "setup")
        log(f"persist: deciding {n} events")
        now, batch = prepared(setup, n)
        setup.store.engine.dispose()
        engine_times, raw_times = [], []
        rows_n = 0
        for r in range(rounds):
            elapsed, rows_n, db = engine_round(base / f"engine{r}", batch, now, prof if r == rounds - 1 else None)
            engine_times.append(elapsed)
            columns, rows, other = read_rows(db)
            raw_times.append(raw_round(base / f"raw{r}", rows, columns))
            log(f"persist round {r + 1}: engine {rows_n / elapsed:.0f} rows/s, raw {len(rows) / raw_times[-1]:.0f} rows/s")
        # one event per transaction (the single-event POST /events write)
        rt = runtime(base / "single")
        t0 = time.perf_counter()
        for item in batch[:single_n]:
            rt.store.ingest([item], now)
        single_elapsed = time.perf_counter() - t0
        single_rows = sum(rt.store.counts_by_status().values())
        rt.store.engine.dispose()
    prof.write()
    engine_rate = rows_n / min(engine_times)
    raw_rate = rows_n / min(raw_times)
    emit({
        "events": n,
        "batch_events": BATCH,
        "notification_rows": rows_n,
        "rows_per_event": round(rows_n / n, 2),
        "also_written_per_batch_run": other,
        "engine_rows_per_s": round(engine_rate),
        "raw_rows_per_s": round(raw_rate),
        "engine_rounds_rows_per_s": [round(rows_n / t) for t in engine_times],
        "raw_rounds_rows_per_s": [round(rows_n / t) for t in raw_times],
        "single_event_tx_rows_per_s": round(single_rows / single_elapsed),
        "single_event_tx_ms": round(1000 * single_elapsed / single_n, 3),
        "persist_ratio": round(engine_rate / raw_rate, 4),
    })


if __name__ == "__main__":
    main()
