"""The HTTP side assembled: each route's endpoint lives in a module of its own (ingest, webhooks,
preferences, reads, health, metrics), reading what it needs from `app.state` (engine/http/state.py).

Refused requests change nothing; an accepted batch is committed before the 202 goes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import Route

from ..health import Readiness
from ..metrics import watch_store
from ..runtime import Runtime
from . import health, ingest, preferences, reads, webhooks
from .auth import Auth
from .intake import Intake
from .metrics import counted, metrics, webhook_counted
from .replays import Replays
from .request_id import RequestId
from .state import Hook

ROUTES = [
    Route("/events", counted("events", ingest.post_events), methods=["POST"]),
    Route("/webhooks/courier", counted("webhooks", webhook_counted(webhooks.courier_webhook)), methods=["POST"]),
    Route("/unsubscribe", counted("unsubscribe", preferences.unsubscribe), methods=["GET", "POST"]),
    Route("/recipients/{recipient_id:path}/preferences", counted("preferences", preferences.preferences),
          methods=["GET", "PUT"]),
    Route("/notifications", counted("notifications", reads.notifications), methods=["GET"]),
    Route("/notifications/upcoming", counted("upcoming", reads.upcoming), methods=["GET"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", reads.openapi_json, methods=["GET"]),
]
HEALTH_ROUTES = [Route("/healthz", health.alive, methods=["GET"]), Route("/readyz", health.readyz, methods=["GET"]),
                 Route("/metrics", metrics, methods=["GET"])]


def build_app(runtime: Runtime, readiness: Readiness | None = None) -> Starlette:
    """`engine serve`'s app. `readiness` (by default checks of the runtime's store and its
    settings' queue, closed with the app) answers /readyz."""
    settings = runtime.settings
    auth = Auth.of(settings)  # a secret that cannot sign is refused before anything starts
    checks = readiness or Readiness(runtime.store.engine, settings.queue_url)
    intake = Intake(runtime)
    replays = Replays(runtime.store, timedelta(seconds=2 * settings.signature_tolerance_s))
    closing = (intake.close,) if readiness is not None else (intake.close, checks.close)  # what is queued first
    watch_store(runtime.store, settings.metrics_refresh_s)
    app = Starlette(routes=ROUTES, lifespan=_lifespan, middleware=[Middleware(RequestId)])
    app.state.hook = Hook(runtime, auth, intake, replays, closing=closing)
    app.state.readiness = checks
    return app


def health_app(readiness: Readiness) -> Starlette:
    """What `engine worker --metrics-port` serves: liveness, readiness and the process's metrics."""
    app = Starlette(routes=HEALTH_ROUTES, middleware=[Middleware(RequestId)])
    app.state.readiness = readiness
    return app


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await run_in_threadpool(app.state.hook.close)
