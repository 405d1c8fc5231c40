"""serve_capacity (no target): the events per second one `engine serve` sustains with p99
latency under 25 ms.

The real command (`engine serve`: hook + worker + sweep in one process, SQLite store and
SQLite queue, outbox delivery) in a scratch directory, driven open-loop (requests start on a
fixed schedule, latency counted from the scheduled start) at rising rates (x1.4 a step), each
step a fixed number of requests (--quick: 80 from 14/s, so p99 is the largest of 80; full:
400 from 5/s); the answer is the highest rate whose p99 stayed under 25 ms with every request
answered 202 (open loop: a server that falls behind shows it in the latency of the requests
that wait for it).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from . import loadgen
from .common import (
    PYTHON,
    ROOT,
    EventMaker,
    emit,
    engine_env,
    free_port,
    log,
    module_args,
    percentile,
    scratch,
    stop_process,
    wait_port,
)

P99_LIMIT_MS = 25.0


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    args = p.parse_args()
    per_step, max_steps, first = (80, 5, 14.0) if args.quick else (400, 12, 5.0)
    from engine.rules.loader import load

    config = load(str(ROOT / "notifications.yaml"))
    maker = EventMaker(config, prefix=f"evt_serve_{int(time.time())}")
    engine_cmd = str(Path(PYTHON).with_name("engine"))
    steps = []
    with scratch() as workdir:
        port = free_port()
        with open(workdir / "serve.log", "w") as err:  # the server writes through its own descriptor
            proc = subprocess.Popen([engine_cmd, "serve", "--port", str(port)], cwd=str(workdir),
                                    env=engine_env(workdir), stdout=err, stderr=err)
        try:
            wait_port(port, proc)
            warm = [loadgen.post("/events", json.dumps(maker.make()).encode(), port) for _ in range(50)]
            loadgen.open_loop(port, warm, 50, 1.0, 8)
            rate, best = first, None
            for _ in range(max_steps):
                requests = [loadgen.post("/events", json.dumps(maker.make()).encode(), port) for _ in range(per_step)]
                res = loadgen.open_loop(port, requests, rate, per_step / rate, connections=64)
                p99 = 1000 * (percentile(res.latencies, 99) or 0)
                # open loop: a server that falls behind shows it in the latency of the requests that wait
                ok = p99 < P99_LIMIT_MS and res.ok(202) == res.sent and not res.errors
                steps.append({"rate": rate, "p50_ms": round(1000 * (percentile(res.latencies, 50) or 0), 2),
                              "p99_ms": round(p99, 2), "answered_202": res.ok(202), "sent": res.sent, "ok": ok})
                log(f"serve: {rate:.0f}/s -> p99 {p99:.1f} ms, {res.ok(202)}/{res.sent} 202 {'ok' if ok else 'over'}")
                if not ok:
                    break
                best = rate
                rate = round(rate * 1.4)
                time.sleep(0.5)
            # one refinement between the last good and the first bad rate
            if best is not None and steps and not steps[-1]["ok"]:
                mid = round((best + steps[-1]["rate"]) / 2)
                requests = [loadgen.post("/events", json.dumps(maker.make()).encode(), port) for _ in range(per_step)]
                res = loadgen.open_loop(port, requests, mid, per_step / mid, connections=64)
                p99 = 1000 * (percentile(res.latencies, 99) or 0)
                ok = p99 < P99_LIMIT_MS and res.ok(202) == res.sent and not res.errors
                steps.append({"rate": mid, "p50_ms": round(1000 * (percentile(res.latencies, 50) or 0), 2),
                              "p99_ms": round(p99, 2), "answered_202": res.ok(202), "sent": res.sent, "ok": ok})
                log(f"serve: {mid:.0f}/s -> p99 {p99:.1f} ms {'ok' if ok else 'over'}")
                if ok:
                    best = mid
        finally:
            stop_process(proc)
    emit({"p99_limit_ms": P99_LIMIT_MS, "requests_per_step": per_step, "steps": steps,
          "serve_events_per_s_p99_25ms": best})


if __name__ == "__main__":
    main()
