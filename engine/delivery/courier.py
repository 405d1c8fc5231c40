"""Delivery through Courier with the official SDK (trycourier).

Retries live in the engine, not in the SDK (max_retries=0): a retry is a durable row update with
backoff, so it survives a restart, and the same Idempotency-Key goes with every attempt.

The message goes out through the SDK's documented request method (`client.post(path, body=...,
cast_to=httpx.Response)`), not `client.send.message`: `message.courier_body` writes Courier's wire
format itself, and skipping the SDK's walk over it (typed-dict transform) and its
response model saves a third of the CPU a send costs. Authentication, base URL, timeouts and
the exceptions stay the SDK's.

Every request has a total deadline (`timeout` seconds from the moment it starts), not only a
timeout per read: a Courier, or a proxy, that trickles its answer a byte at a time would
otherwise hold a delivery thread for as long as it likes, and with it a share of all delivery.
A request past its deadline is a timeout, retried like any other.

A 401 or 403 says the credentials are wrong (a mistyped or rotated key), not the message: every
send would get the same answer. Delivery pauses instead of failing sends (`Credentials`): the
send is `paused` (the runtime puts it back, its attempt not counted), `/readyz` fails with
"courier: credentials rejected", and while paused only one request every `PROBE_EVERY_S` goes
to Courier, as a probe; the first one Courier accepts resumes delivery.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

import courier
import httpcore
import httpx

from .. import metrics
from ..health import ALARMS, COURIER_CREDENTIALS
from ..jsontext import from_json
from .base import Outcome
from .message import Message, courier_body

log = logging.getLogger("engine.delivery")

RETRYABLE_STATUS = {408, 409, 425, 429}
CREDENTIALS_STATUS = {401, 403}
PROBE_EVERY_S = 30.0  # while Courier rejects the credentials: how often one send tries them again
MAX_HEADER_KEY = 255  # the longest Idempotency-Key sent as it is (a common bound of idempotency keys)
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")  # printable ASCII, no outer space
_UNSAFE = re.compile(r"[^\x21-\x7e]")


def header_key(key: str) -> str:
    """The Idempotency-Key header for a send's idempotency key: the key itself when it is short
    printable ASCII; else a readable ASCII prefix of it and the SHA-256 of the whole key. HTTP
    headers carry ASCII only (a recipient `usr_josé` made httpx raise before the request left),
    and never CR, LF or NUL. The same key always gives the same header, across attempts and
    processes, and keys that were already safe are unchanged."""
    if len(key) <= MAX_HEADER_KEY and _HEADER_SAFE.fullmatch(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_UNSAFE.sub('_', key[:160])}~{digest}"


# When the request running on this thread must be over (time.monotonic()); None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("courier_deadline", default=None)


def _left(timeout: float | None, late: type[Exception]) -> float | None:
    """What a network operation may wait: its own timeout, cut to what is left of the request."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise late("the request's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the request has left."""

    def __init__(self, inner: httpcore.NetworkStream):
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self.inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend):
        self.inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _Stream(self.inner.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout), local_address,
                                              socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _Stream(self.inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def _http_client(timeout: float) -> httpx.Client:
    """The SDK's own HTTP client, its connections made through `_Backend`. httpx takes no network
    backend as an argument, so it is put in place in the connection pool of each transport (the
    direct one, and those of proxies from the environment); tests/runtime/test_hostile_input.py proves
    that it is in force."""
    client = courier.DefaultHttpxClient(timeout=timeout)
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        if pool is not None:
            pool._network_backend = _Backend(pool._network_backend)
    return client


class Credentials:
    """Whether Courier accepts this process's credentials. Rejected: `/readyz` fails (`health.ALARMS`),
    an error is logged once, and `probe()` lets one request through every `probe_every_s`."""

    ALARM = COURIER_CREDENTIALS

    def __init__(self, probe_every_s: float = PROBE_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.probe_every_s, self.clock = probe_every_s, clock
        self.rejected: str | None = None  # why, while Courier rejects them
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def probe(self) -> float | None:
        """None: a request may go out (accepted, or this one is the probe); else seconds until the next probe."""
        if self.rejected is None:  # the common case: no lock (a request racing a rejection is one sent just before it)
            return None
        with self._lock:
            if self.rejected is None:
                return None
            now = self.clock()
            if now >= self._next_probe:
                self._next_probe = now + self.probe_every_s
                return None
            return self._next_probe - now

    def reject(self, why: str) -> None:
        with self._lock:
            first = self.rejected is None
            self.rejected = why
            self._next_probe = self.clock() + self.probe_every_s
        if ALARMS.set(self.ALARM, False, f"credentials rejected ({why}): deliveries paused") or first:
            log.error("courier: credentials rejected (%s): deliveries are paused, no send fails for it; set a valid "
                      "COURIER_AUTH_TOKEN (or COURIER_API_KEY) and restart the engine. Courier is tried again every "
                      "%g s.", why, self.probe_every_s)

    def accept(self) -> None:
        if self.rejected is None:  # the common case: no lock
            return
        with self._lock:
            was, self.rejected = self.rejected, None
        if was is not None and ALARMS.set(self.ALARM, True, "credentials accepted"):
            log.warning("courier: credentials accepted again: deliveries resume")


class CourierBackend:
    name = "courier"

    def __init__(self, token: str, base_url: str | None = None, timeout: float = 10.0,
                 credentials: Credentials | None = None):
        self.timeout = timeout
        self.credentials = credentials or Credentials()
        self.client = courier.Courier(api_key=token, base_url=base_url, timeout=timeout, max_retries=0,
                                      http_client=_http_client(timeout))

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        wait = self.credentials.probe()
        if wait is not None:
            return Outcome("paused", error=f"Courier rejected the credentials ({self.credentials.rejected})",
                           retry_after=wait)
        outcome = self._send(message, idempotency_key)
        if outcome.status == "paused":
            self.credentials.reject(outcome.error or "rejected")
            return replace(outcome, error=f"Courier rejected the credentials ({outcome.error})",
                           retry_after=self.credentials.probe_every_s)
        if outcome.status in ("sent", "failed"):
            self.credentials.accept()  # Courier took the key (a message it refuses is refused after that)
        return outcome

    @metrics.timed_courier_request
    def _send(self, message: Message, idempotency_key: str) -> Outcome:
        started = _deadline.set(time.monotonic() + self.timeout)
        try:
            response = self.client.post("/send", body=courier_body(message), cast_to=httpx.Response,
                                        options={"headers": {"Idempotency-Key": header_key(idempotency_key)}})
        except courier.APITimeoutError:
            return Outcome("retry", error="timeout waiting for Courier")
        except courier.APIConnectionError as exc:
            return Outcome("retry", error=f"connection error: {type(exc.__cause__ or exc).__name__}")
        except courier.APIStatusError as exc:
            code = exc.status_code
            detail = _detail(exc)
            if code in CREDENTIALS_STATUS:
                return Outcome("paused", error=f"HTTP {code}: {detail}")
            if code >= 500 or code in RETRYABLE_STATUS:
                return Outcome("retry", error=f"HTTP {code}: {detail}", retry_after=_retry_after(exc))
            return Outcome("failed", error=f"HTTP {code}: {detail}")
        finally:
            _deadline.reset(started)
        return Outcome("sent", request_id=_request_id(response))


def _request_id(response: httpx.Response) -> str | None:
    """Courier answers 202 {"requestId": ...}."""
    try:
        body = from_json(response.content)
    except ValueError:
        return None
    return str(body["requestId"]) if isinstance(body, dict) and body.get("requestId") else None


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:300]
    return str(getattr(exc, "message", "") or exc)[:300]


def _retry_after(exc: Any) -> float | None:
    try:
        value = exc.response.headers.get("retry-after")
        return float(value) if value else None
    except (AttributeError, ValueError):
        return None
