"""`Client.emit(event)` and `Client.emit_many(events)`: one POST /events, signed, retried.

Retries re-send the very same body (the same event ids), so an attempt whose answer was lost is
harmless: the engine stores each event id once and lists a repeat under `duplicates`. Each
attempt is signed anew with a timestamp later than the previous attempt's, since the engine
accepts one signed request once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import EngineError, EngineUnavailable, refused
from .events import MAX_BATCH, Event, encode, envelope, message_id
from .retry import RETRY_STATUSES, Retry, parse_retry_after
from .signing import Bearer, Hmac, Signer, StandardWebhooks

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
USER_AGENT = "notification-engine-client/0.1"
DEFAULT_RETRY = Retry()


@dataclass(frozen=True)
class Receipt:
    """The engine's 202: `ids` sent (in order), which were new, which it had already, and how
    many notifications the request scheduled and cancelled."""

    ids: tuple[str, ...]
    accepted: tuple[str, ...]
    duplicates: tuple[str, ...]
    scheduled: int
    cancelled: int


@dataclass(frozen=True)
class _Request:
    body: bytes
    message_id: str
    ids: tuple[str, ...]


def pick_signer(token: str | None = None, secret: str | None = None, webhook_secret: str | None = None,
                signer: Signer | None = None) -> Signer | None:
    given = [s for s in (None if token is None else Bearer(token), None if secret is None else Hmac(secret),
                         None if webhook_secret is None else StandardWebhooks(webhook_secret), signer)
             if s is not None]
    if len(given) > 1:
        raise ValueError("give one of token, secret, webhook_secret or signer, not several")
    return given[0] if given else None


def _single(event: Event) -> _Request:
    env = envelope(event)
    body = encode(env)
    return _Request(body, message_id(body), (env["id"],))


def _batch(events: Iterable[Event]) -> _Request:
    envs = [envelope(e) for e in events]
    if not envs:
        raise ValueError("emit_many needs at least one event")
    if len(envs) > MAX_BATCH:
        raise ValueError(f"the engine takes at most {MAX_BATCH} events per request (got {len(envs)}); split them")
    body = encode({"events": envs})
    return _Request(body, message_id(body), tuple(e["id"] for e in envs))


class _Base:
    def __init__(self, url: str, *, token: str | None, secret: str | None, webhook_secret: str | None,
                 signer: Signer | None, retry: Retry, clock: Callable[[], float]):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the engine's URL starts with http:// or https:// (got {url!r})")
        self.url = url.rstrip("/")
        self.signer = pick_signer(token, secret, webhook_secret, signer)
        self.retry, self._clock = retry, clock

    def _headers(self, request: _Request, timestamp: int) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.signer is not None:
            headers.update(self.signer.headers(request.body, request.message_id, timestamp))
        return headers

    def _stamps(self) -> Iterable[int]:
        last = 0
        for _ in range(self.retry.attempts):
            last = max(int(self._clock()), last + 1)  # never the previous attempt's signature again
            yield last

    def _outcome(self, request: _Request, response: httpx.Response) -> tuple[Receipt | None, str, float | None]:
        """(the receipt, or None to retry; what went wrong; the Retry-After) or raise for a 4xx."""
        if 200 <= response.status_code < 300:
            return _receipt(request, response), "", None
        if response.status_code in RETRY_STATUSES:
            return (
                None,
                f"HTTP {response.status_code} {_text(response)}",
                parse_retry_after(response.headers.get("retry-after")),
            )
        raise refused(response.status_code, _json_or_text(response))


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _text(response: httpx.Response) -> str:
    body = _json_or_text(response)
    return str(body.get("error", "")) if isinstance(body, dict) else str(body)[:200]


def _receipt(request: _Request, response: httpx.Response) -> Receipt:
    body = _json_or_text(response)
    if not isinstance(body, dict):
        raise EngineError(f"the engine answered {response.status_code} without a JSON object: {str(body)[:200]}")
    return Receipt(request.ids, tuple(body.get("accepted", ())), tuple(body.get("duplicates", ())),
                   int(body.get("scheduled", 0)), int(body.get("cancelled", 0)))


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Client(_Base):
    """A synchronous client; one connection pool, safe to share between threads.

    Authenticate with one of `token` (bearer), `secret` (HMAC, X-Engine-Signature),
    `webhook_secret` (Standard Webhooks, `whsec_...`) or a `signer` of your own; with none the
    engine accepts requests from its own machine only.
    """

    def __init__(self, url: str, *, token: str | None = None, secret: str | None = None,
                 webhook_secret: str | None = None, signer: Signer | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, retry: Retry = DEFAULT_RETRY,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        super().__init__(url, token=token, secret=secret, webhook_secret=webhook_secret, signer=signer,
                         retry=retry, clock=clock)
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **options: Any) -> Client:
        """ENGINE_URL, and one of ENGINE_INGEST_TOKEN, ENGINE_INGEST_SECRET, ENGINE_WEBHOOK_SECRET."""
        return cls(**settings_from_environ(environ), **options)

    def emit(self, event: Event) -> Receipt:
        """Post one event; an `id` and `occurred_at` are added when it has none."""
        return self._send(_single(event))

    def emit_many(self, events: Iterable[Event]) -> Receipt:
        """Post up to 1000 events in one request: all are stored, or none."""
        return self._send(_batch(events))

    def _send(self, request: _Request) -> Receipt:
        last = "no attempt"
        for attempt, stamp in enumerate(self._stamps()):
            retry_after = None
            try:
                response = self._http.post("/events", content=request.body, headers=self._headers(request, stamp))
            except httpx.TransportError as exc:
                last = _describe(exc)
            else:
                receipt, last, retry_after = self._outcome(request, response)
                if receipt is not None:
                    return receipt
            if attempt + 1 < self.retry.attempts:
                self._sleep(self.retry.wait(attempt, retry_after))
        raise EngineUnavailable(self.retry.attempts, last)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """`Client` for asyncio: the same arguments, `await client.emit(event)`."""

    def __init__(self, url: str, *, token: str | None = None, secret: str | None = None,
                 webhook_secret: str | None = None, signer: Signer | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, retry: Retry = DEFAULT_RETRY,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time):
        super().__init__(url, token=token, secret=secret, webhook_secret=webhook_secret, signer=signer,
                         retry=retry, clock=clock)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **options: Any) -> AsyncClient:
        return cls(**settings_from_environ(environ), **options)

    async def emit(self, event: Event) -> Receipt:
        return await self._send(_single(event))

    async def emit_many(self, events: Iterable[Event]) -> Receipt:
        return await self._send(_batch(events))

    async def _send(self, request: _Request) -> Receipt:
        last = "no attempt"
        for attempt, stamp in enumerate(self._stamps()):
            retry_after = None
            try:
                response = await self._http.post("/events", content=request.body, headers=self._headers(request, stamp))
            except httpx.TransportError as exc:
                last = _describe(exc)
            else:
                receipt, last, retry_after = self._outcome(request, response)
                if receipt is not None:
                    return receipt
            if attempt + 1 < self.retry.attempts:
                await asyncio.sleep(self.retry.wait(attempt, retry_after))
        raise EngineUnavailable(self.retry.attempts, last)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


ENVIRON_KEYS = {
    "ENGINE_INGEST_TOKEN": "token",
    "ENGINE_INGEST_SECRET": "secret",
    "ENGINE_WEBHOOK_SECRET": "webhook_secret",
}


def settings_from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    url = environ.get("ENGINE_URL", "")
    if not url:
        raise ValueError("ENGINE_URL is not set (the engine's base URL, such as http://localhost:8000)")
    return {"url": url, **{arg: environ[key] for key, arg in ENVIRON_KEYS.items() if environ.get(key)}}
