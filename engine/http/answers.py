"""How the hook answers: JSON errors, refusals raised by the steps of an endpoint, a store that
fails a request, rows as JSON."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, cast

from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..delivery.message import courier_body, scheduled
from ..health import Trouble
from ..rules.timeparse import format_instant

RETRY_AFTER_S = 5  # what a 503 asks a client to wait: about the sweep's longest back-off
CONTROL = re.compile("[\x00-\x1f\x7f]")
STORE_DOWN = "the store is unavailable; nothing was accepted, try again"

Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """`{"error": message, ...extra}`; every 503 says when to try again, so that clients (and load
    balancers) that honour `Retry-After` back off."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class Refused(Exception):
    """A request refused by one step of its endpoint; `answer()` is what the client gets."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def answer(self) -> JSONResponse:
        return error(self.status, self.message, **self.extra)


def refusals_answered(endpoint: Endpoint) -> Endpoint:
    """The endpoint, answering a `Refused` raised anywhere inside it, and a store that fails it
    (database unreachable, read-only, locked...) with 503 and `Retry-After`, logged once per state
    change: every route that touches the store is served through this, so none answers such a
    failure with a 500 and a traceback, and the route's counters see the 503."""
    @wraps(endpoint)
    async def answered(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Refused as refused:
            return refused.answer()
        except DataError:  # a value the store cannot hold: permanent, never a 503 to retry forever
            raise
        except SQLAlchemyError as exc:
            return _store_failed(request, exc).answer()
    return answered


def _store_failed(request: Request, exc: SQLAlchemyError) -> Refused:
    # Logged by the hook's `Trouble`: one line when the failures start, when the error changes or
    # every few minutes, and one when the store answers again; never one per request.
    _trouble(request).failed(exc)
    return Refused(503, STORE_DOWN)


def _trouble(request: Request) -> Trouble:
    # `Hook.trouble` (engine/http/state.py, which imports this module: read here without its type)
    return cast(Trouble, request.app.state.hook.trouble)


def problems(found: list[tuple[str, str]]) -> dict[str, Any]:
    """`{"problems": [{"path", "message"}, ...]}`, or nothing when there are none."""
    return {"problems": [{"path": path, "message": message} for path, message in found]} if found else {}


def first_line(exc: BaseException | None) -> str:
    """The driver's reason, without the statement or the values."""
    return (str(exc).splitlines() or [""])[0][:200]


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored send as the reads answer it: instants in RFC 3339, the message last, as Courier's
    body when it was scheduled (before the send-time verdict gives its metadata and expiry, and
    the template id, channels and routing in force), whatever shape its row stores."""
    out = {k: v for k, v in row.items() if k != "message"}
    for key in ("send_at", "sent_at", "created_at"):
        if out.get(key) is not None:
            out[key] = format_instant(out[key])
    if "message" in row:
        out["message"] = courier_body(scheduled(row["message"])) if row["message"] else None
    return out
