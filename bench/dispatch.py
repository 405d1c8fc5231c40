"""dispatch_limit_ratio, dispatch_sdk_ratio, dispatch_ratio and dispatch_latency_ratio: sends per
second through the engine's delivery path, against the durable SDK loop (the fair limit), the bare
SDK loop and raw httpx.

The engine side is Runtime.deliver (claim, send-time checks, CourierBackend with the trycourier
SDK, finish) on `concurrency` threads, as Huey's thread workers run it, over rows already queued
in a scratch SQLite store; the Courier stand-in of the tests (tests/support/courier_standin.py)
answers in a process of its own. Three limits post the very same Courier bodies, each with an
Idempotency-Key, on the same number of threads, to the same stand-in:
- the durable SDK loop (dispatch_limit_ratio, the fair limit): the bare SDK loop below plus what
  the design makes every send durable with, and nothing else: before the request, ONE write
  transaction with the engine's own claim statement (the row `queued` -> `sending`, committed
  before the request leaves), after it ONE write transaction with the engine's own finish
  statement (`sending` -> `sent`), on the same store (rows queued alike, other ids), each thread
  its own connection from the store's pool, SQLite's writers queued on one lock as the store's;
  no send-time checks, no history rows, no group commit;
- the bare SDK loop (dispatch_sdk_ratio, reported without a target): one shared `courier.Courier` client
  (max_retries=0, the same timeout) calling the request method the engine calls,
  `client.post("/send", body=..., cast_to=httpx.Response, options={"headers": ...})`, and
  nothing else: what delivery costs with the SDK the design names and no store at all;
- raw httpx (dispatch_ratio, the old limit, reported without a target): one shared
  httpx.Client with the SDK's connection limits.
Rounds alternate (the order rotating) and the best of each side counts. Beside the wall figures,
the CPU of this process (all its threads; the stand-in is another process) per send.

dispatch_latency_ratio: the same engine path with 50 ms added at the stand-in, divided by the
ideal concurrency / 0.05 s.

`--store pg`: the engine side and the durable loop on PostgreSQL (reported, no target).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .common import (
    COURIER_TOKEN,
    EventMaker,
    Standin,
    emit,
    log,
    module_args,
    postgres_database,
    profiler,
    pyspy_phases,
    pyspy_summary,
    runtime,
    scratch,
    utcnow,
)

CONCURRENCY = 8
LATENCY = 0.05

# Where a busy sample of the engine side goes (`--pyspy`): the innermost matching frame names it,
# and within one frame the later phase of the list wins (see `common.pyspy_phases`).
DISPATCH_PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("the bench's threads", ("bench/dispatch.py", "threading.py")),
    ("HTTP: the SDK, httpx, httpcore, sockets", ("courier/", "httpx/", "httpcore/", "h11/", "socket.py", "ssl.py")),
    ("the message: going_out, courier_body", ("engine/delivery/message.py",)),
    ("the deadline backend, credentials", ("_Stream.", "_Backend.", "_left (engine/delivery/courier.py",
                                          "Credentials.")),
    ("metrics, the log line", ("prometheus_client/", "logging/", "engine/metrics.py", "engine/logs.py",
                               "_reported (engine/runtime.py")),
    ("send-time checks (Runtime._check, policy)", ("Runtime._check", "Runtime._in_force", "engine/core/policy.py",
                                                   "engine/rules/")),
    ("store: claim, counts, history, finish, receipts", ("engine/store/", "sqlalchemy/")),
    ("store: decoding the claimed message", ("engine/store/codec.py", "engine/jsontext.py", "json/decoder.py")),
    ("store: BEGIN, COMMIT, WAL checkpoints", ("Statements.begin (", "_cursor (engine/store/transactions.py:",
                                              "engine/store/checkpoint.py", ".commit (")),
]


def run_threads(
    items: list[Any], work: Callable[[Any], str], concurrency: int, limit_s: float
) -> tuple[float, dict[str, int]]:
    """Run work(item) on `concurrency` threads until done (or `limit_s`); (elapsed, outcome counts)."""
    lock = threading.Lock()
    it = iter(items)
    counts: dict[str, int] = {}
    deadline = time.perf_counter() + limit_s

    def loop() -> None:
        while time.perf_counter() < deadline:
            with lock:
                item = next(it, None)
            if item is None:
                return
            try:
                outcome = work(item)
            except Exception as exc:  # a benchmark records, it does not stop
                outcome = f"error:{type(exc).__name__}"
            with lock:
                counts[outcome] = counts.get(outcome, 0) + 1

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, counts


def queued_rows(rt, n: int) -> list[tuple[int, dict, str]]:
    """At least n sends due now, queued: (id, Courier body, idempotency key)."""
    from engine.core.decide import decide
    from engine.delivery.message import courier_body, scheduled

    maker = EventMaker(rt.config, prefix=f"evt_dispatch_{int(time.time())}", people=10**6, types=("booking.confirmed",))
    ids: list[int] = []
    while len(ids) < n:
        now = utcnow()
        events = rt.parse(maker.batch(min(500, (n - len(ids)) // 2 + 1), now))
        renderer = rt.renderer(now)
        rt.store.ingest([(e, decide(rt.config, e, now, renderer)) for e in events], now)
        ids += rt.store.queue_due(utcnow(), limit=n - len(ids))
    rows = {r["id"]: r for r in rt.store.notifications(status=["queued"], limit=10**7, with_payload=True)}
    return [(i, courier_body(scheduled(rows[i]["message"])), rows[i]["idempotency_key"]) for i in ids]


class DurableLoop:
    """The SDK request between one claim and one finish transaction, with the store's statements:
    what a durable send costs at least (`work(row, send)`, send(row) -> outcome)."""

    def __init__(self, store: Any):
        self.store, self.sql = store, store.sql
        self.lock = threading.Lock() if not self.sql.pg else nullcontext()
        self.local = threading.local()

    def _transaction(self, statement: str, params: tuple[Any, ...]) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.store.engine.raw_connection()
        with self.lock:
            cur = conn.cursor()
            self.sql.begin(cur)
            cur.execute(statement, params)
            found = cur.fetchone()
            conn.commit()
        return found

    def work(self, row: tuple[int, dict, str], send: Callable[[Any], str]) -> str:
        at = self.sql.time(utcnow())
        claimed = self._transaction(self.sql.claim, (at, at, row[0]))
        if claimed is None:
            return "not claimed"
        outcome = send(row)
        at = self.sql.time(utcnow())
        self._transaction(self.sql.finish(True, False, False), ("sent", None, at, at, "req", row[0], claimed[8]))
        return outcome

    def close(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()


def _pyspy_start(path: str) -> Any:
    """Sample this process's threads while they hold the GIL (`--gil`): the Python work of each
    side, not its waits on sockets and locks."""
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--pid", str(os.getpid()), "--rate", "500", "--format", "raw", "--threads", "--gil",
            "--nonblocking", "-o", path]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the round starts
    return proc


def _pyspy_stop(spy: Any, path: str) -> None:
    """End the sampling (py-spy writes its stacks on SIGINT) and write the summary beside them."""
    import signal

    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=60)
    Path(path + ".summary.txt").write_text(
        pyspy_summary(path, only="engine/") + "\n\n" + pyspy_phases(path, DISPATCH_PHASES))
    log(f"py-spy profile: {path} (summary {path}.summary.txt)")


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "pg"], default="sqlite")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    p.add_argument("--pyspy", metavar="FILE", help="py-spy every thread of this process during the engine side of "
                   "the last round (collapsed stacks; summary and phases in FILE.summary.txt)")
    args = p.parse_args()
    c = args.concurrency
    n, n_lat, rounds = (500, 300, 2) if args.quick else (2000, 1000, 3)
    prof = profiler(args.profile)
    import courier
    import httpx

    from engine.delivery import CourierBackend

    with scratch() as workdir, (postgres_database() if args.store == "pg" else nullcontext(None)) as pg:
        out: dict[str, Any] = {"store": "postgresql" if pg else "sqlite", "concurrency": c, "sends_per_round": n}
        with Standin(0.0) as standin:
            rt = runtime(workdir, pg, backend=CourierBackend(COURIER_TOKEN, standin.url, 10.0))
            log(f"dispatch: preparing {2 * n * rounds + n_lat + 20} queued sends")
            rows = queued_rows(rt, 2 * n * rounds + n_lat + 20)
            warm, rows = rows[:20], rows[20:]
            durable_rows, rows = rows[:n * rounds], rows[n * rounds:]  # claimed by the durable loop
            durable = DurableLoop(rt.store)
            client = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))

            def raw(row: tuple[int, dict, str], tag: str) -> str:
                r = client.post(
                    f"{standin.url}/send",
                    content=json.dumps(row[1]).encode(),
                    headers={
                        "Authorization": f"Bearer {COURIER_TOKEN}",
                        "Idempotency-Key": f"{tag}:{row[2]}",
                        "Content-Type": "application/json",
                    },
                )
                return "sent" if r.status_code == 202 else f"http {r.status_code}"

            sdk_client = courier.Courier(api_key=COURIER_TOKEN, base_url=standin.url, timeout=10.0, max_retries=0)

            def sdk(row: tuple[int, dict, str], tag: str) -> str:
                try:
                    sdk_client.post("/send", body={"message": row[1]["message"]}, cast_to=httpx.Response,
                                    options={"headers": {"Idempotency-Key": f"{tag}:{row[2]}"}})
                except courier.APIStatusError as exc:
                    return f"http {exc.status_code}"
                return "sent"

            for row in warm:  # first connections, imports
                rt.deliver(row[0])
                raw(row, "warm")
                sdk(row, "warm")
            rates: dict[str, list[float]] = {"raw": [], "sdk": [], "durable": [], "engine": []}
            cpu: dict[str, list[float]] = {"raw": [], "sdk": [], "durable": [], "engine": []}
            engine_counts: dict[str, int] = {}
            for r in range(rounds):
                chunk = rows[r * n:(r + 1) * n]
                work = {"raw": lambda row, r=r: raw(row, f"raw{r}"), "sdk": lambda row, r=r: sdk(row, f"sdk{r}"),
                        "durable": lambda row, r=r: durable.work(row, lambda x: sdk(x, f"durable{r}")),
                        "engine": lambda row: rt.deliver(row[0])}
                sides = list(work)
                for side in sides[r % 4:] + sides[:r % 4]:
                    if side == "engine" and r == rounds - 1:
                        prof.start()
                        spy = _pyspy_start(args.pyspy) if args.pyspy else None
                    cpu0 = time.process_time()
                    items = durable_rows[r * n:(r + 1) * n] if side == "durable" else chunk
                    elapsed, counts = run_threads(items, work[side], c, 120)
                    used = time.process_time() - cpu0
                    if side == "engine" and r == rounds - 1:
                        prof.stop()
                        if spy is not None:
                            _pyspy_stop(spy, args.pyspy)
                    if side == "engine":
                        engine_counts = counts
                    rates[side].append(counts.get("sent", 0) / elapsed)
                    cpu[side].append(1000 * used / max(1, sum(counts.values())))
                    log(
                        f"dispatch round {r + 1}: {side} {rates[side][-1]:.0f}/s, {cpu[side][-1]:.2f} ms CPU/send "
                        f"{counts}"
                    )
            engine_rates, raw_rates = rates["engine"], rates["raw"]
            sdk_rates, durable_rates = rates["sdk"], rates["durable"]
            durable.close()
            lat_rows = rows[rounds * n:]
        with Standin(LATENCY) as slow:
            rt.backend = CourierBackend(COURIER_TOKEN, slow.url, 10.0)
            client = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
            standin = slow
            half = len(lat_rows) // 2
            rt.deliver(lat_rows[0][0])
            elapsed, lat_counts = run_threads(lat_rows[1:half + 1], lambda row: rt.deliver(row[0]), c, 120)
            lat_engine = lat_counts.get("sent", 0) / elapsed
            elapsed, counts = run_threads(lat_rows[half + 1:], lambda row: raw(row, "rawlat"), c, 120)
            lat_raw = counts.get("sent", 0) / elapsed
            log(
                f"dispatch with {LATENCY * 1000:.0f} ms: engine {lat_engine:.1f}/s, raw {lat_raw:.1f}/s, ideal "
                f"{c / LATENCY:.0f}/s"
            )
        rt.store.engine.dispose()
    prof.write()
    ideal = c / LATENCY
    out.update({
        "raw_sends_per_s": round(max(raw_rates), 1),
        "sdk_sends_per_s": round(max(sdk_rates), 1),
        "durable_sends_per_s": round(max(durable_rates), 1),
        "engine_sends_per_s": round(max(engine_rates), 1),
        "durable_rounds": [round(x, 1) for x in durable_rates],
        "raw_rounds": [round(x, 1) for x in raw_rates],
        "sdk_rounds": [round(x, 1) for x in sdk_rates],
        "engine_rounds": [round(x, 1) for x in engine_rates],
        # CPU of this process per send, in each side's best round (all its threads)
        "raw_cpu_ms_per_send": round(cpu["raw"][raw_rates.index(max(raw_rates))], 3),
        "sdk_cpu_ms_per_send": round(cpu["sdk"][sdk_rates.index(max(sdk_rates))], 3),
        "durable_cpu_ms_per_send": round(cpu["durable"][durable_rates.index(max(durable_rates))], 3),
        "engine_cpu_ms_per_send": round(cpu["engine"][engine_rates.index(max(engine_rates))], 3),
        "engine_outcomes_last_round": engine_counts,
        "dispatch_ratio": round(max(engine_rates) / max(raw_rates), 4),
        "dispatch_sdk_ratio": round(max(engine_rates) / max(sdk_rates), 4),
        "dispatch_limit_ratio": round(max(engine_rates) / max(durable_rates), 4),
        "latency_s": LATENCY,
        "latency_engine_sends_per_s": round(lat_engine, 1),
        "latency_raw_sends_per_s": round(lat_raw, 1),
        "latency_ideal_sends_per_s": ideal,
        "latency_engine_outcomes": lat_counts,
        "dispatch_latency_ratio": round(lat_engine / ideal, 4),
    })
    emit(out)


if __name__ == "__main__":
    main()
