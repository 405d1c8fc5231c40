"""pipeline (no target): sends per second through the whole delivery pipeline - the sweep moves
due rows to the queue, Huey's consumer (engine.queue.start_worker, 4 thread workers) runs
Runtime.deliver, CourierBackend posts to the Courier stand-in.

`--store pg`: PostgreSQL store (a scratch database) and RedisHuey (a queue name of its own on
BENCH_REDIS_URL, flushed afterwards, so the tests' queue is never touched); default: SQLite
store and SqliteHuey, as `engine serve` runs out of the box. N sends are made due while the
worker is stopped; the clock runs from start_worker until the stand-in has them all.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

from .common import COURIER_TOKEN, REDIS_URL, Standin, utcnow, emit, log, module_args, postgres_database, runtime, scratch
from .dispatch import queued_rows


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "pg"], default="sqlite")
    args = p.parse_args()
    n = 400 if args.quick else 2000
    from huey import RedisHuey

    from engine import queue
    from engine.delivery import CourierBackend

    with scratch() as workdir, (postgres_database() if args.store == "pg" else nullcontext(None)) as pg, Standin(0.0) as standin:
        rt = runtime(workdir, pg, backend=CourierBackend(COURIER_TOKEN, standin.url, 10.0))
        queued_rows(rt, n)
        # make them due again for the sweep (queued_rows queued them)
        from sqlalchemy import update

        from engine.store.tables import notifications
        with rt.store.engine.begin() as conn:
            conn.execute(update(notifications).where(notifications.c.status == "queued").values(status="scheduled", queued_at=None))
        due = len(rt.store.list(status=["scheduled"], until=utcnow(), limit=10**7))
        if pg:
            huey = RedisHuey(f"bench-{os.getpid()}", url=REDIS_URL, blocking=True, read_timeout=1)  # as make_huey, own name
            queue._register(huey)  # noqa: SLF001 - the engine's own task registration
        else:
            huey = queue.make_huey(f"sqlite:///{workdir}/queue.db")
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
    log(f"pipeline ({args.store}): {done} sends in {elapsed:.2f} s")
    emit({"store": "postgresql+redis" if pg else "sqlite+sqlitehuey", "sends": done, "seconds": round(elapsed, 3),
          "pipeline_sends_per_s": round(done / elapsed, 1)})


if __name__ == "__main__":
    main()
