"""`python -m bench.servers (engine|bare) --port P`: the two servers the ingest figure compares.

Both run under uvicorn with the settings `engine serve` uses (common.UVICORN), in a process of
their own. `engine` is `engine serve --no-worker` (the ingest hook: parse, validate, match,
render, durable commit, 202), set up exactly as engine/cli/serve.py does, on the store and queue
named by the environment. `bare` is a Starlette app whose POST /events reads the body and
answers 202: the limit of this server stack on this machine.
"""

from __future__ import annotations

import argparse

import uvicorn

from .common import UVICORN


def bare_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def events(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"accepted": [], "duplicates": [], "scheduled": 0, "cancelled": 0}, status_code=202)

    return Starlette(routes=[Route("/events", events, methods=["POST"])])


def engine_app():
    from engine.cli.common import runtime, setup_logging
    from engine.http.app import build_app
    from engine.queue import enqueuer, make_huey

    setup_logging()
    rt = runtime(None)
    rt.enqueue = enqueuer(make_huey(rt.settings.queue_url))
    return build_app(rt)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["engine", "bare"])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = engine_app() if args.kind == "engine" else bare_app()
    uvicorn.run(app, port=args.port, **UVICORN)


if __name__ == "__main__":
    main()
