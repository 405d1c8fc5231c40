"""`POST /events`: read, authenticate, parse and check a body, then store its events durably.

A refused request stores nothing; an accepted one is committed (by the intake) before its 202. A
copy of a signed request that was accepted gets the first answer again (engine/http/replays.py).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.events import Event, EventRejected
from ..metrics import INGEST_SECONDS
from ..metrics import events as counted_events
from ..runtime import Runtime
from ..store.repository import IngestResult
from . import formats
from .answers import Refused, first_line, problems, refusals_answered
from .body import BodyIncomplete, BodyTooLarge, NotJSON, parse_json, read_body
from .intake import IntakeClosed
from .replays import Replays, Signed
from .state import Hook, hook

log = logging.getLogger("engine.http")

CHECKED_ON_LOOP = 20  # a batch this small is checked on the event loop; a bigger one on a thread of the pool


async def post_events(request: Request) -> Response:
    """One event, a batch, or CloudEvents (engine/http/formats.py): 202 with what was accepted."""
    with INGEST_SECONDS.time():
        return await _ingest(request)


@refusals_answered
async def _ingest(request: Request) -> Response:
    state = hook(request)
    body = await _body(request, state.settings.max_body_bytes)
    signed = state.auth.ingest(request, body)
    events = await _checked(state.runtime, _batch(request, body))
    if signed is not None:
        replayed = await _claim(state, signed)
        if replayed is not None:
            return replayed
    answer = _accepted(await _stored(state, events, signed))
    if signed is not None:
        await _keep_answer(state.replays, signed, answer)
    return answer


def _accepted(result: IngestResult) -> JSONResponse:
    counted_events("accepted").inc(len(result.accepted))
    counted_events("duplicate").inc(len(result.duplicates))
    return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates,
                         "scheduled": result.scheduled, "cancelled": result.cancelled}, status_code=202)


async def _body(request: Request, limit: int) -> bytes:
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        raise Refused(413, f"the body is larger than {limit} bytes") from None
    except BodyIncomplete:
        raise Refused(400, "the body ended early") from None


def _batch(request: Request, body: bytes) -> formats.Batch:
    try:
        return formats.read(request.headers.get("content-type"), parse_json(body))
    except NotJSON as exc:
        raise Refused(400, str(exc)) from None
    except formats.FormatRefused as exc:
        raise Refused(exc.status, exc.message, **problems(exc.problems)) from None


async def _checked(runtime: Runtime, batch: formats.Batch) -> list[Event]:
    """The batch's events, each checked against its type's schema; Refused (422) lists every problem."""
    envelopes, rejected, events = batch.envelopes, [], []
    try:
        if len(envelopes) <= CHECKED_ON_LOOP:
            events = runtime.parse(envelopes)
        else:
            events = await run_in_threadpool(runtime.parse, envelopes)
    except EventRejected as exc:
        rejected = exc.problems
    found = batch.problems + batch.translate(rejected)
    if found:
        counted_events("rejected").inc(len(envelopes))
        raise Refused(422, "event refused", **problems(found))
    return events


async def _claim(state: Hook, signed: Signed) -> Response | None:
    """None: this signed request is the first, go on; else the first answer of the request it copies."""
    seen = await state.replays.claim(signed)  # a store error: answered 503 by refusals_answered
    if seen.outcome == "answered":  # a copy of an accepted request: its answer again, nothing stored
        return Response(seen.answer, status_code=202, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})
    if seen.outcome == "other request":
        raise Refused(401, "signature already used for another request (a replayed signature)")
    if seen.outcome == "in flight":
        raise Refused(503, "a copy of this request is still being stored; try again")
    return None


async def _stored(state: Hook, events: list[Event], signed: Signed | None) -> IngestResult:
    """The events decided and committed with the requests queued with them; Refused if not."""
    stored = False
    try:
        result = await _submitted(state, events)
        stored = True
    finally:
        if signed is not None and not stored:
            await _release(state.replays, signed)
    state.trouble.ok()
    return result


async def _submitted(state: Hook, events: list[Event]) -> IngestResult:
    try:
        return await state.intake.submit(events)
    except DataError as exc:  # what the door did not foresee: permanent, so not a 503 to retry forever
        log.warning("the store refused a value of an event: %s", type(exc.orig).__name__)
        raise Refused(422, "event refused: the store cannot hold one of its values",
                      problems=[{"path": "$", "message": first_line(exc.orig)}]) from None
    except IntakeClosed:
        raise Refused(503, "the hook is shutting down; nothing was accepted, try again") from None


async def _release(replays: Replays, signed: Signed) -> None:
    # Only a request that succeeded spends its signature: a retry after a 503 goes through.
    try:
        await replays.release(signed)
    except SQLAlchemyError:  # the store is down: the client must sign its retry anew, as the README asks
        log.warning("could not release the signature of a failed request")


async def _keep_answer(replays: Replays, signed: Signed, answer: Response) -> None:
    try:
        await replays.answered(signed, bytes(answer.body).decode())
    except SQLAlchemyError:
        log.warning("could not keep the answer of a signed request")
        await _release(replays, signed)  # a copy is then stored anew, its events answered as duplicates
