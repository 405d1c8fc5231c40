"""persist_all_ratio: rows per second through the engine's write path (Store.ingest) divided by
raw sqlite3.executemany of ALL the rows it wrote, every table, in one transaction;
persist_ratio: the same engine against raw inserts of its notifications rows only (the old
limit, reported without a target).

Events of the Estuary mix are parsed and decided beforehand (not timed); Store.ingest then
writes them in batches of 1 000 events, one transaction per batch, as a full POST /events
batch would. The limit: the very rows the engine wrote, read back as tuples from every table it
writes on ingest (events, recipients, notifications, notification_history, digests,
digest_items: `WRITTEN`), inserted with one sqlite3 `executemany` per table, parents first, into
a fresh database with the same schema (the engine's migrations, so the same indexes and keys)
and the same settings (WAL, synchronous=NORMAL, foreign keys on), all in one transaction: what
storing exactly these rows costs with no planning, no statements built, no conflict handling.
The sides alternate (the order rotating) on fresh files every round; the best round of each
counts. Beside the wall figures, the CPU of this process (time.process_time) per side.

Also reported (no target): the same write path with one event per transaction (what each
single-event POST /events costs), and what else one batch writes (events, history, recipients).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .common import EventMaker, emit, log, module_args, profiler, runtime, scratch, utcnow

BATCH = 1000
# Every table an ingest writes, parents before the rows that refer to them.
WRITTEN = ("events", "recipients", "notifications", "notification_history", "digests", "digest_items")


def prepared(rt, n: int):
    from engine.core.decide import decide

    maker = EventMaker(rt.config, prefix=f"evt_persist_{int(time.time())}")
    now = utcnow()
    events = rt.parse(maker.batch(n, now))
    renderer = rt.renderer(now)
    return now, [(e, decide(rt.config, e, now, renderer)) for e in events]


def engine_round(workdir: Path, batch, now, prof=None, ingest_cpu: list[float] | None = None) -> tuple[float, int, str]:
    """(wall s of the Store.ingest calls, notification rows, database path); `ingest_cpu` gets
    the CPU of those calls alone (the process's, its checkpoint thread too), without the store's
    setup (migrations) and the count after."""
    rt = runtime(workdir)
    t0, c0 = time.perf_counter(), time.process_time()
    if prof:
        prof.start()
    for i in range(0, len(batch), BATCH):
        rt.store.ingest(batch[i:i + BATCH], now)
    if prof:
        prof.stop()
    elapsed = time.perf_counter() - t0
    if ingest_cpu is not None:
        ingest_cpu.append(time.process_time() - c0)
    rows = sum(rt.store.counts_by_status().values())
    rt.store.engine.dispose()
    return elapsed, rows, str(workdir / "engine.db")


def fresh_database(path: Path) -> sqlite3.Connection:
    """A database with the engine's schema (unless `path` holds one already), opened with the
    engine's settings for its SQLite store."""
    from engine.store.db import connect, upgrade

    if not path.exists():
        engine = connect(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def raw_round(path: Path, tables: dict[str, tuple[list[str], list[tuple]]]) -> tuple[float, float]:
    """One executemany per table of `tables` (name -> columns, rows), in one transaction, into the
    database at `path` (a fresh one when there is none); (wall s, CPU s)."""
    conn = fresh_database(path)
    statements = [(f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", rows)
                  for t, (cols, rows) in tables.items() if rows]
    t0, c0 = time.perf_counter(), time.process_time()
    conn.execute("BEGIN IMMEDIATE")
    for sql, rows in statements:
        conn.executemany(sql, rows)
    conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return elapsed, cpu


def read_tables(db: str, tables: tuple[str, ...] = WRITTEN, after: dict[str, int] | None = None,
                with_ids: bool = True) -> dict[str, tuple[list[str], list[tuple]]]:
    """The rows of `tables` as tuples (name -> columns, rows), in rowid order; with `after`, only
    rows past those rowids (what one round added). Without ids, the id column is left out (the
    database numbers the rows)."""
    conn = sqlite3.connect(db)
    out = {}
    for t in tables:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({t})") if with_ids or r[1] != "id"]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {t} WHERE rowid > ? ORDER BY rowid",
                            ((after or {}).get(t, 0),)).fetchall()
        out[t] = (columns, rows)
    conn.close()
    return out


def last_rowids(db: str, tables: tuple[str, ...] = WRITTEN) -> dict[str, int]:
    conn = sqlite3.connect(db)
    found = {t: conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0] for t in tables}
    conn.close()
    return found


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    args = p.parse_args()
    n, rounds, single_n = (3000, 3, 400) if args.quick else (12000, 3, 1500)
    prof = profiler(args.profile)
    with scratch() as base:
        setup = runtime(base / "setup")
        log(f"persist: deciding {n} events")
        now, batch = prepared(setup, n)
        setup.store.engine.dispose()
        times: dict[str, list[float]] = {"engine": [], "all": [], "notifications": []}
        cpus: dict[str, list[float]] = {"engine": [], "all": [], "notifications": []}
        ingest_cpus: list[float] = []  # the engine's CPU in Store.ingest alone, round by round
        tables: dict[str, tuple[list[str], list[tuple]]] = {}
        rows_n = 0
        for r in range(rounds):
            # the engine's rows of this batch, for the raw sides (the first round writes them)
            if not tables:
                elapsed, rows_n, db = engine_round(base / "first", batch, now)
                tables = read_tables(db)
            sides = ["engine", "all", "notifications"]
            for side in sides[r % 3:] + sides[:r % 3]:
                if side == "engine":
                    c0 = time.process_time()
                    elapsed, rows_n, db = engine_round(
                        base / f"engine{r}", batch, now, prof if r == rounds - 1 else None, ingest_cpus
                    )
                    cpu = time.process_time() - c0
                elif side == "all":
                    elapsed, cpu = raw_round(base / f"all{r}.db", tables)
                else:
                    cols, rows = tables["notifications"]
                    keep = [i for i, c in enumerate(cols) if c != "id"]
                    elapsed, cpu = raw_round(base / f"notifications{r}.db", {"notifications": (
                        [cols[i] for i in keep], [tuple(row[i] for i in keep) for row in rows])})
                times[side].append(elapsed)
                cpus[side].append(cpu)
            log(
                f"persist round {r + 1}: engine {rows_n / times['engine'][-1]:.0f} notification rows/s, "
                f"raw all tables {rows_n / times['all'][-1]:.0f}, raw notifications only "
                f"{rows_n / times['notifications'][-1]:.0f}"
            )
        # one event per transaction (the single-event POST /events write)
        rt = runtime(base / "single")
        t0 = time.perf_counter()
        for item in batch[:single_n]:
            rt.store.ingest([item], now)
        single_elapsed = time.perf_counter() - t0
        single_rows = sum(rt.store.counts_by_status().values())
        rt.store.engine.dispose()
    prof.write()
    written = {t: len(rows) for t, (_, rows) in tables.items()}
    all_rows = sum(written.values())
    best = {side: min(ts) for side, ts in times.items()}
    cpu_best = {side: cpus[side][times[side].index(best[side])] for side in times}
    emit({
        "events": n,
        "batch_events": BATCH,
        "notification_rows": rows_n,
        "rows_per_event": round(rows_n / n, 2),
        "rows_written": written,
        "all_rows": all_rows,
        "also_written_per_batch_run": {t: c for t, c in written.items() if t not in ("notifications",)},
        "engine_rows_per_s": round(rows_n / best["engine"]),
        "raw_rows_per_s": round(rows_n / best["notifications"]),
        "engine_all_rows_per_s": round(all_rows / best["engine"]),
        "raw_all_rows_per_s": round(all_rows / best["all"]),
        "engine_events_per_s": round(n / best["engine"]),
        "raw_all_events_per_s": round(n / best["all"]),  # the persist limit in events/s (bench/batch.py)
        "engine_cpu_ms_per_event": round(1000 * cpu_best["engine"] / n, 4),
        "raw_all_cpu_ms_per_event": round(1000 * cpu_best["all"] / n, 4),
        # the engine's CPU figure above includes its store's setup (migrations) and the count after
        "engine_ingest_cpu_ms_per_event": round(1000 * ingest_cpus[times["engine"].index(best["engine"])] / n, 4),
        "ingest_cpu_ratio": round(cpu_best["all"] / ingest_cpus[times["engine"].index(best["engine"])], 4),
        "engine_rounds_rows_per_s": [round(rows_n / t) for t in times["engine"]],
        "raw_rounds_rows_per_s": [round(rows_n / t) for t in times["notifications"]],
        "raw_all_rounds_rows_per_s": [round(all_rows / t) for t in times["all"]],
        "single_event_tx_rows_per_s": round(single_rows / single_elapsed),
        "single_event_tx_ms": round(1000 * single_elapsed / single_n, 3),
        "persist_ratio": round(best["notifications"] / best["engine"], 4),
        "persist_all_ratio": round(best["all"] / best["engine"], 4),
    })


if __name__ == "__main__":
    main()
