"""`GET /metrics` (the Prometheus exposition of engine/metrics.py) and the counting of answers."""

from __future__ import annotations

from functools import wraps

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..metrics import REGISTRY, http_requests
from ..metrics import webhook as count_webhook
from .answers import Endpoint
from .webhooks import webhook_outcome


async def metrics(request: Request) -> Response:
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def counted(route: str, endpoint: Endpoint) -> Endpoint:
    """The endpoint, counting each answer in `engine_http_requests_total` by route and status."""
    @wraps(endpoint)
    async def answered(request: Request) -> Response:
        response = await endpoint(request)
        http_requests(route, str(response.status_code)).inc()
        return response
    return answered


def webhook_counted(endpoint: Endpoint) -> Endpoint:
    """The webhook endpoint, counting each answer in `engine_webhooks_total` by what it was."""
    @wraps(endpoint)
    async def answered(request: Request) -> Response:
        response = await endpoint(request)
        count_webhook(webhook_outcome(response))
        return response
    return answered
