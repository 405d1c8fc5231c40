"""`POST /webhooks/courier`: Courier's delivery-status webhooks (`message:updated`), verified, then
applied to the send they name. A webhook that overtakes the commit of its send is kept (202
`pending`) and applied when the send is recorded; Courier retries a 4xx, such as a 404, never.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..clock import utcnow
from ..metrics import WEBHOOK_OUTCOMES
from .answers import CONTROL, Refused, refusals_answered
from .body import BodyIncomplete, BodyTooLarge, NotJSON, parse_json, read_body
from .replays import courier_key
from .state import hook

COURIER_STATUSES = {"DELIVERED": "delivered", "OPENED": "opened", "CLICKED": "clicked", "READ": "read",
                    "UNDELIVERABLE": "undeliverable", "UNROUTABLE": "undeliverable"}
MAX_MESSAGE_ID = 200


@refusals_answered
async def courier_webhook(request: Request) -> Response:
    """200 with what became of the status (`WebhookAnswer`), 202 while its send is not yet recorded;
    503 with `Retry-After` while the store fails (Courier retries a 5xx, never a 4xx but 408/429)."""
    state = hook(request)
    body = await _body(request, state.settings.max_body_bytes)
    key = courier_key(state.auth.courier(request, body), body)
    if await state.replays.seen(key):
        raise Refused(401, "signature already used (a replayed request)")
    update = _update(_parsed(body))
    if isinstance(update, dict):
        return JSONResponse(update)
    message_id, status = update
    outcome = await run_in_threadpool(state.runtime.store.record_delivery, message_id, status, utcnow())
    await state.replays.remember(key)
    state.trouble.ok()  # a store that failed requests answers again: said once, with the count
    return _answer(outcome)


def _answer(outcome: str) -> JSONResponse:
    if outcome == "pending":  # it overtook the commit of its send: kept, applied when the send is recorded
        return JSONResponse({"result": outcome, "detail": "accepted, pending its send"}, status_code=202)
    return JSONResponse({"result": outcome})


async def _body(request: Request, limit: int) -> bytes:
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        raise Refused(413, "body too large") from None
    except BodyIncomplete:
        raise Refused(400, "the body ended early") from None


def _parsed(body: bytes) -> Any:
    try:
        return parse_json(body)
    except NotJSON as exc:
        raise Refused(400, str(exc)) from None


def _update(payload: Any) -> tuple[str, str] | dict[str, Any]:
    """(the message id, the engine's status) of a delivery-status update; or the answer to a
    webhook the engine ignores; Refused (422) for a `message:updated` without its fields."""
    if not isinstance(payload, dict) or payload.get("type") != "message:updated":
        return {"ignored": True}
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
        raise Refused(422, "message:updated needs data.id and data.status")
    if CONTROL.search(data["id"]):  # no message id holds one, and PostgreSQL cannot compare a NUL
        raise Refused(422, "data.id holds a control character")
    status = COURIER_STATUSES.get(data["status"].upper())
    if status is None:
        return {"ignored": True, "status": data["status"][:50]}
    return data["id"][:MAX_MESSAGE_ID], status


def _json_or_none(body: bytes | memoryview) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def webhook_outcome(response: Response) -> str:
    """What a webhook's answer says happened (one of `WEBHOOK_OUTCOMES`)."""
    code = response.status_code
    if code == 401:
        return "refused"
    if code >= 500:
        return "error"
    body = _json_or_none(response.body)
    result = body.get("result") if isinstance(body, dict) else None
    if isinstance(result, str) and result in WEBHOOK_OUTCOMES:
        return result
    if isinstance(body, dict) and body.get("ignored"):
        return "ignored"
    return "invalid" if code >= 400 else "applied"
