"""`python -m bench.standin --latency S`: the Courier stand-in of the tests in its own process.

Prints its URL, then answers one command per stdin line with one JSON line:
`count` (accepted first-time sends), `arrivals` (Idempotency-Key -> wall time of arrival),
`reset`. It stops when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tests.support import courier_standin
from tests.support.courier_standin import CourierStandin

from .common import COURIER_TOKEN


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args()
    # The stand-in answers with two writes (headers, then body); with Nagle's algorithm on, the
    # body waits for the client's delayed ACK of the headers: ~40 ms on every answer, which
    # would swamp what the benchmark measures. Real Courier (and uvicorn) do not do that.
    courier_standin._Handler.disable_nagle_algorithm = True
    # The stand-in stamps arrivals with time.monotonic(); this turns them into wall time.
    offset = time.time() - time.monotonic()
    standin = CourierStandin(token=COURIER_TOKEN).start()
    standin.latency = args.latency
    print(standin.url, flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "count":
                out = len(standin.requests)
            elif cmd == "arrivals":
                out = {}
                for r in standin.requests:
                    out.setdefault(r["idempotency_key"], r["at"] + offset)
            elif cmd == "reset":
                standin.reset()
                out = True
            else:
                out = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(out), flush=True)
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
