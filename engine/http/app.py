"""The HTTP side: the ingest hook, Courier's webhooks, unsubscribe, preferences, reads, health.

Refused requests change nothing; an accepted batch is committed before the 202 goes out.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import logging
import re
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..core.events import MAX_ID, EventRejected
from ..health import Readiness, Trouble
from ..metrics import EVENTS, HTTP_REQUESTS, INGEST_SECONDS, REGISTRY, WEBHOOK_OUTCOMES, watch_store
from ..metrics import webhook as count_webhook
from ..rules.timeparse import format_instant, parse_duration
from ..runtime import Runtime, utcnow
from ..settings import SettingsError
from ..signing import (SignatureError, WebhookHeaders, read_unsubscribe_token, verify_courier, verify_ingest,
                       verify_webhook, webhook_key)
from ..store.codec import orjson_reads_exactly
from . import formats
from .intake import Intake, IntakeClosed
from .openapi import openapi
from .replays import Replays, Signed
from .request_id import RequestId

log = logging.getLogger("engine.http")

COURIER_STATUSES = {"DELIVERED": "delivered", "OPENED": "opened", "CLICKED": "clicked",
                    "UNDELIVERABLE": "undeliverable", "UNROUTABLE": "undeliverable"}


class BodyTooLarge(Exception):
    pass


class BodyIncomplete(Exception):
    """The client went away (or was cut off at the server's read deadline) before the body ended."""


RETRY_AFTER_S = 5  # what a 503 asks a client to wait: about the sweep's longest back-off


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    # Every 503 says when to try again: clients (and load balancers) that honour it back off.
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def readyz(readiness: Readiness) -> Response:
    """200 with each check's status, or 503 naming the failing ones (`Readiness.check`)."""
    checks = await run_in_threadpool(readiness.check)
    failing = [name for name, check in checks.items() if not check.ok]
    body = {"ready": not failing, "failing": failing, "checks": {name: c.json() for name, c in checks.items()}}
    if failing:
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse(body)


def health_app(readiness: Readiness, registry: CollectorRegistry | None = None) -> Starlette:
    """What `engine worker --metrics-port` serves: liveness, readiness and the process's metrics."""
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def ready(request: Request) -> Response:
        return await readyz(readiness)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(generate_latest(registry or REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"]), Route("/readyz", ready, methods=["GET"]),
                             Route("/metrics", metrics, methods=["GET"])], middleware=[Middleware(RequestId)])


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyIncomplete from None
    return b"".join(chunks)


MAX_PREFERENCE_KEY = 300  # preferences.key
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def recipient_problem(recipient_id: str) -> str | None:
    """Why a recipient id from a URL can name nobody, or None (the door refuses such ids in events)."""
    if not recipient_id:
        return "a recipient id must not be empty"
    if len(recipient_id) > MAX_ID:
        return f"a recipient id has at most {MAX_ID} characters (this one has {len(recipient_id)})"
    if _CONTROL.search(recipient_id):
        return "a recipient id holds no control characters"
    return None


MAX_DEPTH = 200  # levels of nesting a body may have (the store's encoder writes up to 254)
_NOT_READ = object()


def parse_json(body: bytes) -> Any:
    value = _NOT_READ
    if orjson_reads_exactly(body):
        try:
            # Whatever orjson reads is UTF-8 JSON without NaN, Infinity or lone surrogates; anything
            # else goes the slow way, which reads it or says what is wrong.
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    if value is _NOT_READ:
        value = _parse_slowly(body)
    if _deeper_than(value, MAX_DEPTH):
        raise ValueError(f"the body is nested too deeply (more than {MAX_DEPTH} levels)")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def _parse_slowly(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"the body is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    try:  # "\ud800" decodes to a lone surrogate, which nothing downstream can store or send
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the body holds an escaped lone surrogate (such as \\ud800), which is not text") from None
    except RecursionError:
        raise ValueError(f"the body is nested too deeply (more than {MAX_DEPTH} levels)") from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"the body is not JSON: {name} is not a JSON number")


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("testclient", "localhost")


def bearer_ok(request: Request, token: str | None) -> bool:
    header = request.headers.get("authorization", "")
    if not token or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def build_app(runtime: Runtime, readiness: Readiness | None = None) -> Starlette:
    """The hook. `readiness` (by default checks of the runtime's store and its settings' queue) answers /readyz."""
    settings = runtime.settings
    checks = readiness or Readiness(runtime.store.engine, settings.queue_url)
    requests_total, events_total, ingest_seconds = HTTP_REQUESTS, EVENTS, INGEST_SECONDS
    watch_store(runtime.store, settings.metrics_refresh_s)
    open_hook = not settings.ingest_token and not settings.ingest_secret

    replay_window = timedelta(seconds=2 * settings.signature_tolerance_s)
    intake = Intake(runtime)
    ingest_trouble = Trouble("ingest", log)  # a store that is down fails every request: logged once, not per request

    def signed(kind: str, stamp: int, body: bytes) -> str:
        """What a signature covers (timestamp and body), however its header is spelled."""
        return hashlib.sha256(f"{kind}:{stamp}.".encode() + body).hexdigest()

    replays = Replays(runtime.store, replay_window)
    try:
        signing_key = webhook_key(settings.ingest_secret) if settings.ingest_secret else b""
    except ValueError as exc:
        raise SettingsError(f"ENGINE_INGEST_SECRET: {exc}") from None

    def credentials(request: Request, body: bytes) -> tuple[str | None, Signed | None]:
        """(why the caller may not ingest, or None; what a signed request is recorded under, to
        answer its copies). Reads nothing from the store."""
        if bearer_ok(request, settings.ingest_token):
            return None, None
        signature = request.headers.get("x-engine-signature")
        webhook = WebhookHeaders(request.headers.get("webhook-id"), request.headers.get("webhook-timestamp"),
                                 request.headers.get("webhook-signature"))
        try:
            if settings.ingest_secret and signature:
                stamp = verify_ingest(settings.ingest_secret, signature, body, utcnow(), settings.signature_tolerance_s)
                return None, Signed.ingest(stamp, body)
            if settings.ingest_secret and webhook.present:
                msg_id = verify_webhook(signing_key, webhook, body, utcnow(), settings.signature_tolerance_s)
                return None, Signed.webhook(msg_id, body)
        except SignatureError as exc:
            return str(exc), None
        if open_hook and _is_loopback(request):
            return None, None
        return "missing or invalid credentials", None

    async def release(signed_request: Signed) -> None:
        # Only a request that succeeded spends its signature: a retry after a 503 goes through.
        try:
            await replays.release(signed_request)
        except SQLAlchemyError:  # the store is down: the client must sign its retry anew, as the README asks
            log.warning("could not release the signature of a failed request")

    def remember(digest: str | None) -> None:
        if digest is not None:
            runtime.store.remember_signature(digest, utcnow(), replay_window)

    async def keep_answer(signed_request: Signed, answer: Response) -> None:
        try:
            await replays.answered(signed_request, bytes(answer.body).decode())
        except SQLAlchemyError:
            log.warning("could not keep the answer of a signed request")
            await release(signed_request)  # a copy is then stored anew, its events answered as duplicates

    def admin(request: Request) -> bool:
        if settings.ingest_token:
            return bearer_ok(request, settings.ingest_token)
        return not settings.ingest_secret and _is_loopback(request)

    def counted(route: str, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            response = await handler(request)
            requests_total.labels(route, str(response.status_code)).inc()
            return response
        return wrapped

    async def post_events(request: Request) -> Response:
        with ingest_seconds.time():
            try:
                body = await read_body(request, settings.max_body_bytes)
            except BodyTooLarge:
                return error(413, f"the body is larger than {settings.max_body_bytes} bytes")
            except BodyIncomplete:
                return error(400, "the body ended early")
            why, digest = credentials(request, body)
            if why:
                return error(401, why)
            try:
                payload = parse_json(body)
                batch = formats.read(request.headers.get("content-type"), payload)
            except ValueError as exc:
                return error(400, str(exc))
            except formats.FormatRefused as exc:
                return error(exc.status, exc.message, **_problems(exc.problems))
            envelopes, rejected = batch.envelopes, []
            try:
                # a few events are checked here, on the loop; a big batch on a thread of the pool
                events = runtime.parse(envelopes) if len(envelopes) <= 20 else await run_in_threadpool(runtime.parse, envelopes)
            except EventRejected as exc:
                rejected = exc.problems
            problems = batch.problems + batch.translate(rejected)
            if problems:
                events_total.labels("rejected").inc(len(envelopes))
                return error(422, "event refused", **_problems(problems))
            if digest is not None:
                try:
                    seen = await replays.claim(digest)
                except SQLAlchemyError as exc:
                    ingest_trouble.failed(exc)
                    return error(503, "the store is unavailable; nothing was accepted, try again")
                if seen.outcome == "answered":  # a copy of an accepted request: its answer again, nothing stored
                    return Response(seen.answer, status_code=202, media_type="application/json",
                                    headers={"Idempotent-Replayed": "true"})
                if seen.outcome == "other request":
                    return error(401, "signature already used for another request (a replayed signature)")
                if seen.outcome == "in flight":
                    return error(503, "a copy of this request is still being stored; try again")
            stored = False
            try:
                result = await intake.submit(events)  # decided and committed with the requests queued with it
                stored = True
            except DataError as exc:  # what the door did not foresee: permanent, so not a 503 to retry forever
                log.warning("the store refused a value of an event: %s", type(exc.orig).__name__)
                return error(422, "event refused: the store cannot hold one of its values",
                             problems=[{"path": "$", "message": _first_line(exc.orig)}])
            except SQLAlchemyError as exc:
                ingest_trouble.failed(exc)
                return error(503, "the store is unavailable; nothing was accepted, try again")
            except IntakeClosed:
                return error(503, "the hook is shutting down; nothing was accepted, try again")
            finally:
                if digest is not None and not stored:
                    await release(digest)
            ingest_trouble.ok()
            events_total.labels("accepted").inc(len(result.accepted))
            events_total.labels("duplicate").inc(len(result.duplicates))
            answer = JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates,
                                   "scheduled": result.scheduled, "cancelled": result.cancelled}, status_code=202)
            if digest is not None:
                await keep_answer(digest, answer)
            return answer

    async def courier_webhook(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            return error(413, "body too large")
        except BodyIncomplete:
            return error(400, "the body ended early")
        if not settings.webhook_secret:
            return error(401, "webhooks are refused: COURIER_WEBHOOK_SECRET is not set")
        try:
            stamp = verify_courier(settings.webhook_secret, request.headers.get("courier-signature"), body, utcnow(),
                                   settings.signature_tolerance_s)
        except SignatureError as exc:
            return error(401, str(exc))
        digest = signed("courier", stamp, body)
        if await run_in_threadpool(runtime.store.signature_seen, digest, utcnow(), replay_window):
            return error(401, "signature already used (a replayed request)")
        try:
            payload = parse_json(body)
        except ValueError as exc:
            return error(400, str(exc))
        if not isinstance(payload, dict) or payload.get("type") != "message:updated":
            return JSONResponse({"ignored": True})
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
            return error(422, "message:updated needs data.id and data.status")
        if _CONTROL.search(data["id"]):  # no message id holds one, and PostgreSQL cannot compare a NUL
            return error(422, "data.id holds a control character")
        status = COURIER_STATUSES.get(data["status"].upper())
        if status is None:
            return JSONResponse({"ignored": True, "status": data["status"][:50]})
        outcome = await run_in_threadpool(runtime.store.record_delivery, data["id"][:200], status, utcnow())
        await run_in_threadpool(remember, digest)
        if outcome == "pending":  # it overtook the commit of its send: kept, applied when the send is recorded
            return JSONResponse({"result": outcome, "detail": "accepted, pending its send"}, status_code=202)
        return JSONResponse({"result": outcome})

    async def unsubscribe(request: Request) -> Response:
        if not settings.secret_key:
            return error(404, "unsubscribe links are not enabled (ENGINE_SECRET_KEY is not set)")
        token = request.query_params.get("token", "")
        try:
            found = read_unsubscribe_token(settings.secret_key, token, utcnow())
        except SignatureError as exc:
            return HTMLResponse(f"<p>{html.escape(str(exc))}</p>", status_code=400) if request.method == "GET" else error(400, str(exc))
        rule = runtime.config.notifications.get(found.scope)
        label = html.escape(rule.description or rule.id) if rule else html.escape(found.scope)
        if request.method == "GET":
            return HTMLResponse(
                f"<!doctype html><title>Unsubscribe</title><form method=post>"
                f"<p>Stop receiving “{label}” from {html.escape(runtime.config.app.name)}?</p>"
                f"<input type=hidden name=List-Unsubscribe value=One-Click>"
                f"<button type=submit>Unsubscribe</button></form>")
        # A category scope ("category:<name>") is stored under the category's own name, the key policy reads.
        key = found.scope.removeprefix("category:")
        await runtime_set_pref(found.recipient_id, {key: False})
        return JSONResponse({"unsubscribed": found.scope, "recipient": found.recipient_id})

    async def runtime_set_pref(recipient_id: str, values: dict[str, bool | None]) -> dict[str, bool]:
        return await run_in_threadpool(runtime.store.set_preferences, recipient_id, values, utcnow())

    async def prefs(request: Request) -> Response:
        if not admin(request):
            return error(401, "missing or invalid credentials")
        recipient_id = request.path_params["recipient_id"]  # a `/` in an id arrives percent-encoded, or as it is
        why = recipient_problem(recipient_id)
        if why:
            return error(422, why, problems=[{"path": "recipient_id", "message": why}])
        if request.method == "GET":
            return JSONResponse({"recipient": recipient_id, "preferences": await run_in_threadpool(runtime.store.preferences, recipient_id)})
        try:
            payload = parse_json(await read_body(request, 65_536))
        except (ValueError, BodyTooLarge, BodyIncomplete) as exc:
            return error(400, str(exc) or "body too large or incomplete")
        values: Any = payload.get("preferences") if isinstance(payload, dict) else None  # a dict once checked
        problems = _check_prefs(runtime, values)
        if problems:
            return error(422, "invalid preferences", problems=problems)
        try:
            stored = await runtime_set_pref(recipient_id, values)
        except DataError as exc:
            return error(422, "invalid preferences: the store cannot hold one of the values",
                         problems=[{"path": "$.preferences", "message": _first_line(exc.orig)}])
        return JSONResponse({"recipient": recipient_id, "preferences": stored})

    async def list_notifications(request: Request) -> Response:
        if not admin(request):
            return error(401, "missing or invalid credentials")
        q = request.query_params
        if any(_CONTROL.search(value) for _, value in q.multi_items()):
            return error(400, "a query parameter holds a control character")
        try:
            limit = min(int(q.get("limit", "100")), 1000)
        except ValueError:
            return error(400, "limit must be a number")
        if limit < 1:
            return error(400, "limit must be at least 1")
        rows = await run_in_threadpool(lambda: runtime.store.list(
            status=q.getlist("status") or None, recipient_id=q.get("recipient"), notification=q.get("notification"), limit=limit,
            newest_first=True))
        return JSONResponse({"notifications": [_row_json(r) for r in rows]})

    async def upcoming(request: Request) -> Response:
        if not admin(request):
            return error(401, "missing or invalid credentials")
        try:
            within = parse_duration(request.query_params.get("within", "24h"))
            until = utcnow() + within
        except ValueError as exc:
            return error(400, str(exc))
        except OverflowError:  # more days than a timedelta or a datetime holds
            return error(400, "within reaches past the end of the calendar")
        rows = await run_in_threadpool(lambda: runtime.upcoming(until, limit=1000))
        return JSONResponse({"upcoming": [_row_json(r) for r in rows]})

    async def healthz(request: Request) -> Response:
        # liveness only: it reads nothing, so a store or queue that is down does not get the process restarted
        return JSONResponse({"ok": True, "env": settings.env, "delivery": runtime.backend.name})

    async def ready(request: Request) -> Response:
        return await readyz(checks)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi(runtime.config, settings.public_url))

    routes = [
        Route("/events", counted("events", post_events), methods=["POST"]),
        Route("/webhooks/courier", counted("webhooks", webhook_counted(courier_webhook)), methods=["POST"]),
        Route("/unsubscribe", counted("unsubscribe", unsubscribe), methods=["GET", "POST"]),
        Route("/recipients/{recipient_id:path}/preferences", counted("preferences", prefs), methods=["GET", "PUT"]),
        Route("/notifications", counted("notifications", list_notifications), methods=["GET"]),
        Route("/notifications/upcoming", counted("upcoming", upcoming), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(intake.close)  # what is queued is finished first
        if readiness is None:
            checks.close()

    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(RequestId)])


def webhook_counted(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The webhook route, counting each answer in `engine_webhooks_total` by what it was."""
    async def wrapped(request: Request) -> Response:
        response = await handler(request)
        count_webhook(webhook_outcome(response))
        return response
    return wrapped


def webhook_outcome(response: Response) -> str:
    """What a webhook's answer says happened (one of `WEBHOOK_OUTCOMES`)."""
    code = response.status_code
    if code == 401:
        return "refused"
    if code >= 500:
        return "error"
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        body = None
    result = body.get("result") if isinstance(body, dict) else None
    if isinstance(result, str) and result in WEBHOOK_OUTCOMES:
        return result
    if isinstance(body, dict) and body.get("ignored"):
        return "ignored"
    return "invalid" if code >= 400 else "applied"


def _problems(found: list[tuple[str, str]]) -> dict[str, Any]:
    return {"problems": [{"path": path, "message": message} for path, message in found]} if found else {}


def _check_prefs(runtime: Runtime, values: Any) -> list[dict[str, str]]:
    if not isinstance(values, dict):
        return [{"path": "$.preferences", "message": "must be an object of key -> true/false/null"}]
    problems = []
    known = set(runtime.config.notifications) | set(runtime.config.categories)
    for key, value in values.items():
        base = key.split(":", 1)[0]
        if len(key) > MAX_PREFERENCE_KEY or _CONTROL.search(key):
            problems.append({"path": "$.preferences", "message": f"a key has at most {MAX_PREFERENCE_KEY} characters "
                                                                 "and no control character"})
        elif base not in known:
            problems.append({"path": f"$.preferences.{key}", "message": "not a notification id or category"})
        elif value is not None and not isinstance(value, bool):
            problems.append({"path": f"$.preferences.{key}", "message": "must be true, false or null"})
    return problems


def _first_line(exc: BaseException | None) -> str:
    """The driver's reason, without the statement or the values."""
    return (str(exc).splitlines() or [""])[0][:200]


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("message",)}
    for key in ("send_at", "sent_at", "created_at"):
        if out.get(key) is not None:
            out[key] = format_instant(out[key])
    if "message" in row:
        out["message"] = row["message"]
    return out


