"""pending_1m_rss_growth_mb and cancel_at_1m_ms: the store with 1 000 000 pending notifications
(--quick: 100 000, labelled so).

The rows are the engine's own: one booking.confirmed event is ingested, and its four reminder
rows (client and practitioner, 24 h and 30 min before the session) are cloned, booking by
booking, with their history rows, into the scratch SQLite store (send_at spread over the next
60 days, so none falls due).

RSS: `engine worker` as start_worker runs it (Huey consumer on SqliteHuey, 4 thread workers,
the sweep every 0.2 s), in a process of its own, sampled from /proc every 0.2 s for a fixed
time. Growth = the peak RSS of that worker over the store with the pending rows - the peak of
the identical worker over the same schema with no rows. (Also reported: the first sample and
the growth within the run, and how long one sweep takes over the pending rows.)

Cancel: Runtime.ingest of one booking.cancelled event (parse, decide, the UPDATE of its
pending reminders, their history rows, the cancellation notice, commit), for 25 bookings
spread over the table; median and p90, in ms.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from .common import PYTHON, ROOT, EventMaker, emit, log, module_args, percentile, rss_mb, runtime, scratch, utcnow

FMT = "%Y-%m-%d %H:%M:%S.%f"


def fill(workdir: Path, n: int) -> tuple[list[str], str]:
    """n pending reminder rows cloned from a real booking; returns the booking ids and the template id."""
    rt = runtime(workdir)
    maker = EventMaker(rt.config, prefix="evt_fill", types=("booking.confirmed",))
    event = maker.make()
    rt.ingest([event])
    booking = event["data"]["booking"]["id"]
    client, practitioner = event["data"]["client"]["id"], event["data"]["practitioner"]["id"]
    rt.store.engine.dispose()
    conn = sqlite3.connect(str(workdir / "engine.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(notifications)") if r[1] != "id"]
    templates = [dict(zip(columns, r, strict=True)) for r in conn.execute(
        f"SELECT {', '.join(columns)} FROM notifications WHERE key IS NOT NULL AND status = 'scheduled'")]
    sql = f"INSERT INTO notifications ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    now = utcnow()
    created = now.strftime(FMT)
    bookings = n // len(templates)
    start_id = conn.execute("SELECT max(id) FROM notifications").fetchone()[0] + 1
    chunk = 50_000 // len(templates)
    conn.execute("BEGIN IMMEDIATE")
    for first in range(0, bookings, chunk):
        rows = []
        for b in range(first, min(bookings, first + chunk)):
            bid, cid, pid = f"bk_fill_{b}", f"usr_c_fill_{b % 50_000}", f"usr_p_fill_{b % 5_000}"
            send_at = (now + timedelta(hours=1) + timedelta(days=60) * b / bookings).strftime(FMT)
            for t in templates:
                row = dict(t)
                for k in ("key", "idempotency_key", "payload", "recipient_id"):
                    if row[k]:
                        row[k] = row[k].replace(booking, bid).replace(client, cid).replace(practitioner, pid)
                row.update(
                    send_at=send_at, due_at=send_at, created_at=created, updated_at=created, event_id=f"evt_fill_{b}"
                )
                rows.append(tuple(row[c] for c in columns))
        conn.executemany(sql, rows)
    conn.execute("INSERT INTO notification_history (notification_id, status, reason, at) "
                 "SELECT id, 'scheduled', NULL, created_at FROM notifications WHERE id >= ?", (start_id,))
    conn.execute("COMMIT")
    # start the measurements from a checkpointed store, not with the fill's WAL still to copy back
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return [f"bk_fill_{b}" for b in range(bookings)], event


def cancel_times(workdir: Path, bookings: list[str], template: dict, samples: int = 25) -> dict:
    rt = runtime(workdir)
    cancel_rule = rt.config.notifications["client_booking_cancelled"]
    ex = cancel_rule.example
    base = json.loads(json.dumps(dict(ex.data)))
    times, cancelled = [], []
    picks = [bookings[(i * 7919) % len(bookings)] for i in range(samples + 3)]
    for i, bid in enumerate(picks):
        data = json.loads(json.dumps(base))
        data["booking"] = {**template["data"]["booking"], "id": bid}
        data["client"] = {**template["data"]["client"]}
        data["practitioner"] = {**template["data"]["practitioner"]}
        event = {"id": f"evt_cancel_{i}_{int(time.time())}", "type": "booking.cancelled",
                 "occurred_at": utcnow().isoformat(), "data": data}
        t0 = time.perf_counter()
        result = rt.ingest([event])
        elapsed = time.perf_counter() - t0
        if i >= 3:  # the first ones warm caches and connections
            times.append(1000 * elapsed)
            cancelled.append(result.cancelled)
    rt.store.engine.dispose()
    return {"median_ms": round(statistics.median(times), 3), "p90_ms": round(percentile(times, 90), 3),
            "max_ms": round(max(times), 3), "samples": len(times),
            "reminders_cancelled_per_booking": sorted(set(cancelled))}


def worker(workdir: Path, seconds: float) -> dict:
    """The child: a worker as `engine worker` runs it; its RSS every 0.2 s."""
    from engine.queue import make_huey, start_worker

    rt = runtime(workdir)
    sweeps = []
    for _ in range(5):
        t0 = time.perf_counter()
        rt.sweep()
        sweeps.append(1000 * (time.perf_counter() - t0))
    huey = make_huey(f"sqlite:///{workdir}/queue.db", rt)
    consumer, stop = start_worker(rt, huey, 4)
    samples = [rss_mb()]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        samples.append(rss_mb())
    stop.set()
    consumer.stop(graceful=True)
    return {
        "rss_first_mb": round(samples[0], 1),
        "rss_peak_mb": round(max(samples), 1),
        "rss_last_mb": round(samples[-1], 1),
        "sweep_ms": round(statistics.median(sweeps), 2),
    }


def run_worker(workdir: Path, seconds: float) -> dict:
    out = subprocess.run([PYTHON, "-m", "bench.pending", "--worker", str(workdir), "--seconds", str(seconds)],
                         cwd=str(ROOT), capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    p.add_argument("--worker", metavar="WORKDIR", help=argparse_hidden())
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker), args.seconds)), flush=True)
        return
    n, seconds = (100_000, 4.0) if args.quick else (1_000_000, 20.0)
    with scratch() as base:
        full, empty = base / "full", base / "empty"
        t0 = time.perf_counter()
        bookings, template = fill(full, n)
        fill_s = time.perf_counter() - t0
        rows = (
            sqlite3.connect(str(full / "engine.db"))
            .execute("SELECT count(*) FROM notifications WHERE status='scheduled'")
            .fetchone()[0]
        )
        log(f"pending: {rows} pending rows written in {fill_s:.1f} s")
        cancel = cancel_times(full, bookings, template)
        log(f"pending: cancel one booking's reminders: median {cancel['median_ms']} ms")
        rt = runtime(empty)  # the same schema, no rows
        rt.store.engine.dispose()
        idle = run_worker(empty, seconds)
        loaded = run_worker(full, seconds)
        log(f"pending: worker RSS peak {idle['rss_peak_mb']} MB empty, {loaded['rss_peak_mb']} MB with {rows} pending")
        db_mb = (full / "engine.db").stat().st_size / 2**20
    emit({
        "pending_rows": rows,
        "label": "1 000 000 pending" if n == 1_000_000 else f"{rows} pending (--quick; the full run uses 1 000 000)",
        "database_mb": round(db_mb, 1),
        "worker_seconds": seconds,
        "worker_empty": idle,
        "worker_pending": loaded,
        "rss_growth_within_run_mb": round(loaded["rss_peak_mb"] - loaded["rss_first_mb"], 1),
        "cancel": cancel,
        "pending_1m_rss_growth_mb": round(loaded["rss_peak_mb"] - idle["rss_peak_mb"], 1),
        "cancel_at_1m_ms": cancel["median_ms"],
    })


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
