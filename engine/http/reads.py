"""What the hook tells an operator (authenticated): the sends stored (`GET /notifications`), those
coming (`GET /notifications/upcoming`); and to anyone, its OpenAPI document (`GET /openapi.json`)."""

from __future__ import annotations

from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..clock import utcnow
from ..rules.timeparse import parse_duration
from .answers import CONTROL, Refused, refusals_answered, row_json
from .openapi import openapi
from .state import hook

MAX_LIMIT = 1000
UPCOMING_LIMIT = 1000


@refusals_answered
async def notifications(request: Request) -> Response:
    """The newest sends first; `status` (repeatable), `recipient`, `notification`, `limit` filter them."""
    state = hook(request)
    state.auth.admin(request)
    q = request.query_params
    if any(CONTROL.search(value) for _, value in q.multi_items()):
        raise Refused(400, "a query parameter holds a control character")
    limit = _limit(q.get("limit", "100"))
    rows = await run_in_threadpool(lambda: state.runtime.store.notifications(
        status=q.getlist("status") or None, recipient_id=q.get("recipient"), notification=q.get("notification"),
        limit=limit, newest_first=True))
    return JSONResponse({"notifications": [row_json(r) for r in rows]})


def _limit(raw: str) -> int:
    try:
        limit = min(int(raw), MAX_LIMIT)
    except ValueError:
        raise Refused(400, "limit must be a number") from None
    if limit < 1:
        raise Refused(400, "limit must be at least 1")
    return limit


@refusals_answered
async def upcoming(request: Request) -> Response:
    """The sends due within `within` (default 24h), rendered, without sending anything."""
    state = hook(request)
    state.auth.admin(request)
    until = _until(request.query_params.get("within", "24h"))
    rows = await run_in_threadpool(lambda: state.runtime.upcoming(until, limit=UPCOMING_LIMIT))
    return JSONResponse({"upcoming": [row_json(r) for r in rows]})


def _until(within: str) -> datetime:
    try:
        return utcnow() + parse_duration(within)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    except OverflowError:  # more days than a timedelta or a datetime holds
        raise Refused(400, "within reaches past the end of the calendar") from None


async def openapi_json(request: Request) -> Response:
    runtime = hook(request).runtime
    return JSONResponse(openapi(runtime.config, runtime.settings.public_url))
