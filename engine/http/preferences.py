"""A recipient's preferences (`GET`/`PUT /recipients/{id}/preferences`, authenticated) and the
signed unsubscribe links (`GET`/`POST /unsubscribe?token=...`, one-click as RFC 8058 asks)."""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..clock import utcnow
from ..core.events import MAX_ID
from ..runtime import Runtime
from ..signing import SignatureError, read_unsubscribe_token
from .answers import CONTROL, Refused, error, first_line, refusals_answered
from .body import BodyIncomplete, BodyTooLarge, NotJSON, parse_json, read_body
from .state import hook

MAX_PREFERENCE_KEY = 300  # preferences.key
MAX_PREFERENCES_BODY = 65_536


def recipient_problem(recipient_id: str) -> str | None:
    """Why a recipient id from a URL can name nobody, or None (the door refuses such ids in events)."""
    if not recipient_id:
        return "a recipient id must not be empty"
    if len(recipient_id) > MAX_ID:
        return f"a recipient id has at most {MAX_ID} characters (this one has {len(recipient_id)})"
    if CONTROL.search(recipient_id):
        return "a recipient id holds no control characters"
    return None


@refusals_answered
async def preferences(request: Request) -> Response:
    """GET: the recipient's preferences; PUT `{"preferences": {key: true/false/null}}`: changes them."""
    state = hook(request)
    state.auth.admin(request)
    recipient_id = _recipient_id(request)
    if request.method == "GET":
        return JSONResponse({"recipient": recipient_id,
                             "preferences": await run_in_threadpool(state.runtime.store.preferences, recipient_id)})
    values = await _values(request, state.runtime)
    return JSONResponse({"recipient": recipient_id, "preferences": await _stored(state.runtime, recipient_id, values)})


def _recipient_id(request: Request) -> str:
    recipient_id: str = request.path_params["recipient_id"]  # a `/` in an id arrives percent-encoded, or as it is
    why = recipient_problem(recipient_id)
    if why:
        raise Refused(422, why, problems=[{"path": "recipient_id", "message": why}])
    return recipient_id


async def _stored(runtime: Runtime, recipient_id: str, values: dict[str, bool | None]) -> Any:
    """The recipient's preferences once `values` are stored; Refused (422) for a value the store cannot hold."""
    try:
        return await run_in_threadpool(runtime.store.set_preferences, recipient_id, values, utcnow())
    except DataError as exc:
        raise Refused(422, "invalid preferences: the store cannot hold one of the values",
                      problems=[{"path": "$.preferences", "message": first_line(exc.orig)}]) from None


async def _values(request: Request, runtime: Runtime) -> dict[str, bool | None]:
    """The checked `preferences` of a PUT's body; Refused (400, 422) says what is wrong."""
    try:
        payload = parse_json(await read_body(request, MAX_PREFERENCES_BODY))
    except (NotJSON, BodyTooLarge, BodyIncomplete) as exc:
        raise Refused(400, str(exc) or "body too large or incomplete") from None
    values: Any = payload.get("preferences") if isinstance(payload, dict) else None  # a dict once checked
    found = check_preferences(runtime, values)
    if found:
        raise Refused(422, "invalid preferences", problems=found)
    return values  # type: ignore[no-any-return]


def check_preferences(runtime: Runtime, values: Any) -> list[dict[str, str]]:
    """The problems of `values`: each key a notification id or category (`key` or `key:channel`),
    each value true, false or null."""
    if not isinstance(values, dict):
        return [{"path": "$.preferences", "message": "must be an object of key -> true/false/null"}]
    found = []
    known = set(runtime.config.notifications) | set(runtime.config.categories)
    for key, value in values.items():
        if len(key) > MAX_PREFERENCE_KEY or CONTROL.search(key):
            found.append({"path": "$.preferences", "message": f"a key has at most {MAX_PREFERENCE_KEY} characters "
                                                              "and no control character"})
        elif key.split(":", 1)[0] not in known:
            found.append({"path": f"$.preferences.{key}", "message": "not a notification id or category"})
        elif value is not None and not isinstance(value, bool):
            found.append({"path": f"$.preferences.{key}", "message": "must be true, false or null"})
    return found


@refusals_answered
async def unsubscribe(request: Request) -> Response:
    """GET: a page asking to confirm; POST: turns the link's notification or category off."""
    state = hook(request)
    secret, runtime = state.settings.secret_key, state.runtime
    if not secret:
        return error(404, "unsubscribe links are not enabled (ENGINE_SECRET_KEY is not set)")
    try:
        found = read_unsubscribe_token(secret, request.query_params.get("token", ""), utcnow())
    except SignatureError as exc:
        if request.method == "GET":
            return HTMLResponse(f"<p>{html.escape(str(exc))}</p>", status_code=400)
        return error(400, str(exc))
    if request.method == "GET":
        return _confirm_page(runtime, found.scope)
    await run_in_threadpool(runtime.store.unsubscribe, found.recipient_id, found.scope, utcnow())
    return JSONResponse({"unsubscribed": found.scope, "recipient": found.recipient_id})


def _confirm_page(runtime: Runtime, scope: str) -> HTMLResponse:
    rule = runtime.config.notifications.get(scope)
    label = html.escape(rule.description or rule.id) if rule else html.escape(scope)
    return HTMLResponse(
        f"<!doctype html><title>Unsubscribe</title><form method=post>"
        f"<p>Stop receiving “{label}” from {html.escape(runtime.config.app.name)}?</p>"
        f"<input type=hidden name=List-Unsubscribe value=One-Click>"
        f"<button type=submit>Unsubscribe</button></form>")
