"""`python -m bench.servers (bare|durable|durable-thread) --port P`: the limits the ingest figures compare with.

Both are Starlette apps served exactly as `engine serve` serves the engine's app: uvicorn with
`engine.http.server.server_config` (its h11 protocol with the read deadline, keep-alive,
`log_level`, no access log), in a process of their own. The engine itself runs as the real
`engine serve --no-worker` (bench/ingest.py starts it).

- `bare`: POST /events reads the body and answers 202. The limit of the server stack alone
  (the old limit, reported without a target).
- `durable`: POST /events reads the body, takes the event's id, type and time from it, and
  answers 202 after ONE durable insert of the raw event: a row of the engine's own `events`
  table (same migrations, so the same primary key), committed, on a store opened by the
  engine's own `engine.store.db.connect`, so with the same file settings (SQLite: WAL,
  synchronous=NORMAL, the busy timeout, the checkpoint thread) or the same pool (PostgreSQL:
  psycopg, pool_size 10, max_overflow 20). The store is named by BENCH_LIMIT_DATABASE_URL.
  The insert runs either on the event loop (`durable`) or on a pool thread (`durable-thread`,
  Starlette's `run_in_threadpool`, one pooled connection per request, so that commits overlap
  as the server's group commit allows). On SQLite the loop is 3-5 times faster (a WAL commit with
  synchronous=NORMAL does not wait for the disk: the thread hop costs more than the insert), so
  only that one is measured; on PostgreSQL neither wins on every round (the loop queues one
  round trip and WAL flush after another, the threads pay the hop), so both are measured and the
  better counts: the limit is the highest a one-insert handler reaches.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .common import UVICORN

# The answer of the engine's hook for one accepted event (same size on the wire).
_ANSWER = {"accepted": [], "duplicates": [], "scheduled": 0, "cancelled": 0}
_INSERT = ("INSERT INTO events (id, type, occurred_at, received_at, payload) VALUES ({p}, {p}, {p}, {p}, {p}) "
           "ON CONFLICT (id) DO NOTHING")


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def events(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(_ANSWER, status_code=202)

    return Starlette(routes=[Route("/events", events, methods=["POST"])])


def _row(body: bytes, pg: bool) -> tuple[Any, ...]:
    """The events row of one raw event: its id, type and time, and the body as it came."""
    event = json.loads(body)
    now = datetime.now(UTC)
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    if pg:
        return event["id"], event["type"], occurred, now, body.decode()
    # as the engine stores times on SQLite (statements.Statements.time): UTC text without the offset
    return (event["id"], event["type"], occurred.astimezone(UTC).isoformat(" ", "microseconds")[:26],
            now.isoformat(" ", "microseconds")[:26], body.decode())


def durable_insert(url: str) -> Callable[[bytes], None]:
    """insert(body): one event row committed, on a store opened as the engine opens its own."""
    from engine.store.db import connect, upgrade

    engine = connect(url)
    upgrade(engine)
    pg = engine.dialect.name == "postgresql"
    sql = _INSERT.format(p="%s" if pg else "?")
    if pg:
        def insert(body: bytes) -> None:
            conn = engine.raw_connection()  # the pool's connection, given back at the end
            try:
                cur = conn.cursor()
                cur.execute(sql, _row(body, True))
                conn.commit()
            finally:
                conn.close()
        return insert
    raw = engine.raw_connection()
    raw.detach()  # one connection kept for the writes, as the engine's SQLite store keeps one
    db = raw.dbapi_connection

    def insert_sqlite(body: bytes) -> None:
        cur = db.cursor()
        cur.execute("BEGIN IMMEDIATE")  # as the engine's writers begin
        try:
            cur.execute(sql, _row(body, False))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
    return insert_sqlite


def durable_app(url: str, on_loop: bool) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    insert = durable_insert(url)

    async def events(request: Request) -> JSONResponse:
        body = await request.body()
        if on_loop:
            insert(body)
        else:
            await run_in_threadpool(insert, body)
        return JSONResponse(_ANSWER, status_code=202)

    return Starlette(routes=[Route("/events", events, methods=["POST"])])


def serve(app: Any, port: int) -> None:
    import uvicorn

    from engine.http.server import server_config

    uvicorn.Server(server_config(app, UVICORN["host"], port, log_config=None)).run()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["bare", "durable", "durable-thread"])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    if args.kind == "bare":
        app = bare_app()
    else:
        app = durable_app(os.environ["BENCH_LIMIT_DATABASE_URL"], on_loop=args.kind == "durable")
    serve(app, args.port)


if __name__ == "__main__":
    main()
