"""lateness_p99_s and idle_lateness_p99_s: how late sends go out, through the real worker.

One process runs what `engine serve` runs besides HTTP: engine.queue.start_worker (Huey's
consumer on SqliteHuey with the engine's thread workers, and the sweep loop) on a scratch SQLite
store, delivering with CourierBackend to the Courier stand-in (its own process, which stamps
each arrival). Lateness = arrival at the stand-in - the row's send_at.

Loaded: for `load_s` seconds, 2 threads ingest events of the Estuary mix in-process at
`rate` events/s in all (each schedules its immediate sends - due at once - and future
reminders), while sends scheduled beforehand fall due spread over the same window. Every send
due in the window counts; one not delivered by the end counts as late as the end.

Idle: sends scheduled beforehand fall due after `idle_s` seconds in which nothing at all
happened (full run: 120 s; --quick: 20 s, labelled so).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from .common import (
    COURIER_TOKEN,
    EventMaker,
    Standin,
    emit,
    log,
    module_args,
    percentile,
    runtime,
    scratch,
    summary,
    utcnow,
)

RATE = 25.0  # events per second ingested during the loaded window


def person(i: int) -> dict:
    return {"id": f"usr_late_{i}", "email": f"late{i}@example.com", "name": f"Late {i}", "timezone": "Europe/Berlin"}


def booking(data: dict, i: int) -> dict:
    """The example's data with a booking of its own: the rule's idempotency key is its booking id,
    so sends sharing one would be a single send."""
    return {**data, "booking": {**data["booking"], "id": f"bk_late_{i}"}}


def scheduled(rt, row_id: int | None) -> None:
    if row_id is None:
        raise SystemExit("lateness: a direct send was not scheduled (refused or a duplicate): the figure would lie")


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    args = p.parse_args()
    load_s, idle_s, timed_n, idle_n = (8.0, 20.0, 80, 50) if args.quick else (60.0, 120.0, 600, 100)
    from engine.delivery import CourierBackend
    from engine.queue import make_huey, start_worker

    with scratch() as workdir, Standin(0.0) as standin:
        rt = runtime(workdir, backend=CourierBackend(COURIER_TOKEN, standin.url, 10.0))
        rule = rt.config.notifications["client_booking_confirmation"]
        data = dict(rule.example.data)
        t0 = utcnow() + timedelta(seconds=2)
        load_end = t0 + timedelta(seconds=load_s)
        idle_due = load_end + timedelta(seconds=idle_s)
        log(f"lateness: scheduling {timed_n} sends due during the load and {idle_n} after {idle_s:.0f} s idle")
        for i in range(timed_n):
            at = t0 + timedelta(seconds=load_s * (i + 0.5) / timed_n)
            scheduled(rt, rt.schedule("client_booking_confirmation", person(i), at, booking(data, i)))
        for i in range(idle_n):
            at, who = idle_due + timedelta(seconds=1.0 * i / idle_n), 100_000 + i
            scheduled(rt, rt.schedule("client_booking_confirmation", person(who), at, booking(data, who)))
        huey = make_huey(f"sqlite:///{workdir}/queue.db", rt)
        consumer, stop = start_worker(rt, huey, rt.settings.workers)
        maker = EventMaker(rt.config, prefix=f"evt_late_{int(time.time())}")
        lock = threading.Lock()
        ingested = [0]

        def load(offset: float) -> None:
            period = 2.0 / RATE
            start = t0.timestamp() + offset
            k = 0
            while True:
                at = start + k * period
                if at >= load_end.timestamp():
                    return
                delay = at - time.time()
                if delay > 0:
                    time.sleep(delay)
                with lock:
                    event = maker.make()
                rt.ingest([event])
                with lock:
                    ingested[0] += 1
                k += 1

        threads = [threading.Thread(target=load, args=(i / RATE,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log(f"lateness: load done ({ingested[0]} events); idle for {idle_s:.0f} s")
        end_wait = idle_due + timedelta(seconds=1 + 10)
        while utcnow() < end_wait:
            time.sleep(0.5)
            if utcnow() > idle_due + timedelta(seconds=1.5):
                n = rt.store.notifications(
                    status=["scheduled", "queued", "sending"], until=idle_due + timedelta(seconds=1), limit=1
                )
                if not n:
                    break
        stop.set()
        consumer.stop(graceful=True)
        arrivals = standin.arrivals()
        collected_at = utcnow()
        rows = rt.store.notifications(
            since=t0 - timedelta(seconds=5), until=idle_due + timedelta(seconds=5), limit=10**7
        )
        rt.store.engine.dispose()

    def lateness(row: dict) -> float | None:
        if row["status"] in ("cancelled", "skipped"):
            return None
        arrived = arrivals.get(row["idempotency_key"])
        if arrived is None:  # never delivered: at least as late as the end of the run
            return (collected_at - row["send_at"]).total_seconds()
        return arrived - row["send_at"].timestamp()

    loaded, timed, immediate, idle = [], [], [], []
    for row in rows:
        late = lateness(row)
        if late is None:
            continue
        if t0 <= row["send_at"] <= load_end:
            loaded.append(late)
            (timed if (row["event_id"] or "").startswith("direct:") else immediate).append(late)
        elif row["send_at"] >= idle_due:
            idle.append(late)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    r3 = lambda d: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}  # noqa: E731
    emit({
        "load_s": load_s, "rate_events_per_s": RATE, "events_ingested": ingested[0], "idle_s": idle_s,
        "workers": 4, "sweep_interval_s": 0.2,
        "loaded_sends": len(loaded), "loaded_sends_per_s": round(len(loaded) / load_s, 1),
        "loaded_lateness_s": r3(summary(loaded)),
        "loaded_immediate_lateness_s": r3(summary(immediate)),
        "loaded_timed_lateness_s": r3(summary(timed)),
        "idle_lateness_s": r3(summary(idle)),
        "statuses_in_window": statuses,
        "lateness_p99_s": round(percentile(loaded, 99), 4) if loaded else None,
        "idle_lateness_p99_s": round(percentile(idle, 99), 4) if idle else None,
    })


if __name__ == "__main__":
    main()
