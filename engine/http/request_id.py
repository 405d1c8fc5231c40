"""A request id for every HTTP request: the caller's `X-Request-ID` when it is a sane one (a load
balancer's or a client's, so that their logs and ours meet), else a new one. It is echoed in the
response's `X-Request-ID` and carried by every log line written while the request is answered
(`engine.logs.request_id`), and the request's outcome is one DEBUG line."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..logs import request_id

log = logging.getLogger("engine.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = b"x-request-id"
# What an id may be: what common proxies and tracers send (UUIDs, hex, base64-ish), and nothing that
# could forge a log line or smuggle a header (no spaces, quotes, control characters).
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _NewIds:
    """New ids: a random prefix per process and a counter (32 hex digits). Unlike uuid4, no
    system call per request, which on the event loop also lets another thread take the GIL."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)  # a forked server worker must not repeat its parent's ids

    def renew(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4)))  # next() is atomic under the GIL

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_new_id = _NewIds()


def given_or_new(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's own id when it is sane, else a new one (32 hex digits)."""
    for name, value in headers:
        if name.lower() == HEADER:
            text = value.decode("latin-1")
            if SANE.fullmatch(text):
                return text
            break
    return _new_id()


class RequestId:
    """ASGI middleware (see the module docstring)."""

    def __init__(self, app: App):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = given_or_new(scope.get("headers") or [])
        token = request_id.set(rid)
        started, status = time.monotonic(), 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                _set_id(message, rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.DEBUG):  # the line's arguments cost more than the check
                _log_answer(scope, status, started)
            request_id.reset(token)


def _set_id(start: Message, rid: str) -> None:
    """The response's X-Request-Id header is `rid`, whatever the app set."""
    headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != HEADER]
    start["headers"] = [*headers, (HEADER, rid.encode("latin-1"))]


def _log_answer(scope: Scope, status: int, started: float) -> None:
    # The path without its query: a query may hold a signed token (unsubscribe links).
    path = _CONTROL.sub("?", str(scope.get("path", "")))[:300]
    log.debug("%s %s answered %s in %.1f ms", scope.get("method"), path, status or "nothing",
              (time.monotonic() - started) * 1000)
