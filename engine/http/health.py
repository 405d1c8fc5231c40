"""Liveness (`GET /healthz`) and readiness (`GET /readyz`), in `engine serve` and on
`engine worker --metrics-port`."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .answers import RETRY_AFTER_S
from .state import hook, readiness


async def alive(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def healthz(request: Request) -> Response:
    """Liveness only: it reads nothing, so a store or queue that is down does not get the process restarted."""
    runtime = hook(request).runtime
    return JSONResponse({"ok": True, "env": runtime.settings.env, "delivery": runtime.backend.name})


async def readyz(request: Request) -> Response:
    """200 with each check's status, or 503 naming the failing ones (`Readiness.check`)."""
    checks = await run_in_threadpool(readiness(request).check)
    failing = [name for name, check in checks.items() if not check.ok]
    body = {"ready": not failing, "failing": failing, "checks": {name: c.json() for name, c in checks.items()}}
    if failing:
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse(body)
