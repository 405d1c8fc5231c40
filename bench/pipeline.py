"""pipeline_pg_ratio: sends per second through the whole delivery pipeline - the sweep moves
due rows to the queue, Huey's consumer (engine.queue.start_worker, 4 thread workers) runs
Runtime.deliver, CourierBackend posts to the Courier stand-in.

`--store pg`: PostgreSQL store (a scratch database) and RedisHuey (a queue name of its own on
BENCH_REDIS_URL, flushed afterwards, so the tests' queue is never touched); default: SQLite
store and SqliteHuey, as `engine serve` runs out of the box. N sends are made due while the
worker is stopped; the clock runs from start_worker until the stand-in has them all.

`--store both` (what `python -m bench` runs): pipeline_pg_ratio, the PostgreSQL + Redis
pipeline's sends/s divided by the SQLite one's, the two alternating round by round (each
round on fresh stores), the best round of each counting.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

from .common import (
    COURIER_TOKEN,
    REDIS_URL,
    Standin,
    emit,
    log,
    module_args,
    postgres_database,
    runtime,
    scratch,
    utcnow,
)
from .dispatch import queued_rows


def one_round(store: str, n: int) -> tuple[int, float]:
    """N due sends through sweep -> Huey -> 4 workers -> stand-in on fresh stores: (sent, seconds)."""
    from sqlalchemy import update

    from engine import queue
    from engine.delivery import CourierBackend
    from engine.store.tables import notifications

    with (
        scratch() as workdir,
        postgres_database() if store == "pg" else nullcontext(None) as pg,
        Standin(0.0) as standin,
    ):
        rt = runtime(workdir, pg, backend=CourierBackend(COURIER_TOKEN, standin.url, 10.0))
        queued_rows(rt, n)
        # make them due again for the sweep (queued_rows queued them)
        with rt.store.engine.begin() as conn:
            conn.execute(
                update(notifications)
                .where(notifications.c.status == "queued")
                .values(status="scheduled", queued_at=None)
            )
        due = len(rt.store.notifications(status=["scheduled"], until=utcnow(), limit=10**7))
        if pg:
            huey = queue.make_huey(REDIS_URL, rt, name=f"bench-{os.getpid()}-{time.monotonic_ns()}")
        else:
            huey = queue.make_huey(f"sqlite:///{workdir}/queue.db", rt)
        t0 = time.perf_counter()
        consumer, stop = queue.start_worker(rt, huey, rt.settings.workers)
        deadline = t0 + 120
        while standin.count() < due and time.perf_counter() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        done = standin.count()
        stop.set()
        consumer.stop(graceful=True)
        if pg:
            huey.storage.flush_all()
        rt.store.engine.dispose()
    log(f"pipeline ({store}): {done} sends in {elapsed:.2f} s")
    return done, elapsed


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "pg", "both"], default="sqlite")
    args = p.parse_args()
    n = 400 if args.quick else 2000
    if args.store != "both":
        done, elapsed = one_round(args.store, n)
        emit({"store": "postgresql+redis" if args.store == "pg" else "sqlite+sqlitehuey", "sends": done,
              "seconds": round(elapsed, 3), "pipeline_sends_per_s": round(done / elapsed, 1)})
        return
    rounds = 2 if args.quick else 3
    rates: dict[str, list[float]] = {"sqlite": [], "pg": []}
    sent: dict[str, list[int]] = {"sqlite": [], "pg": []}
    for r in range(rounds):
        for store in (["sqlite", "pg"] if r % 2 == 0 else ["pg", "sqlite"]):
            done, elapsed = one_round(store, n)
            rates[store].append(done / elapsed)
            sent[store].append(done)
    best = {store: max(v) for store, v in rates.items()}
    emit({"store": "both", "sends_per_round": n, "rounds": rounds,
          "sqlite_rounds": [round(x, 1) for x in rates["sqlite"]], "pg_rounds": [round(x, 1) for x in rates["pg"]],
          "sends": sent, "pipeline_sqlite_sends_per_s": round(best["sqlite"], 1),
          "pipeline_pg_redis_sends_per_s": round(best["pg"], 1),
          "pipeline_pg_ratio": round(best["pg"] / best["sqlite"], 4) if best["sqlite"] else None})


if __name__ == "__main__":
    main()
