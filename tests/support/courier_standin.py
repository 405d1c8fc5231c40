"""A small stand-in for the Courier HTTP API (``POST /send`` only), for tests.

It is a real HTTP server on 127.0.0.1 (ephemeral port), standard library only,
so the official ``trycourier`` SDK can be pointed at it with ``base_url``::

    with CourierStandin(token="tok") as standin:
        client = courier.Courier(api_key="tok", base_url=standin.url, max_retries=0, timeout=2)
        client.send.message(message={...}, idempotency_key="k1")
        assert standin.sends_by_key() == {"k1": 1}

Checks, in the order applied to each request:

1. Anything but ``POST /send`` -> 404 ``{"message": ..., "type": "not_found"}``. Fault
   injection queues are not consumed by such requests.
2. Injected faults (each queue counts ``POST /send`` arrivals independently, so a
   request can be both delayed and failed):
   * ``drop_next(n)``: the connection is closed without any answer. By default this
     happens *before* processing (nothing recorded); ``process_first=True`` records the
     send (and stores its answer for replay) and then drops the connection.
   * ``fail_next(n, status, retry_after)``: answer ``status`` (429 or 5xx) with an error
     body and optional ``Retry-After``. **Injected failures are not stored for
     idempotency replay and are not counted as sends**, so a retry with the same
     ``Idempotency-Key`` can succeed. (Real Courier replays the first answer for a key even
     if it was a 5xx; we chose the simpler semantics here on purpose.) They are listed in
     ``standin.injected``.
3. ``Authorization: Bearer <token>`` else 401 ``{"message": "Unauthorized"}`` (not
   stored for replay: an unauthenticated call never claims a key).
4. ``Idempotency-Key`` replay: a key seen before (within this server's life) gets the
   FIRST stored answer again - same status and body, including a stored 400 - and is
   recorded in ``standin.replays`` rather than as a new send. The replay does not
   compare bodies; ``replays[i]["same_body"]`` tells whether the body matched.
5. Body validation: JSON object ``{"message": {...}}`` whose message holds ``to`` (object
   with at least one non-empty string among email/user_id/phone_number), ``template``
   (non-empty string), optional ``data`` (object) and ``routing``
   (``{"method": "single"|"all", "channels": [non-empty str, ...]}``), ``metadata``
   (``event`` a string, ``tags`` at most 9 strings of 1 to 30 characters, ``trace_id`` a
   string, ``utm`` an object) and ``expiry`` (``expires_in`` required: milliseconds, an
   integer >= 0, or an ISO 8601 duration such as ``PT1H``; ``expires_at`` optional: epoch
   milliseconds or an ISO 8601 date-time with its offset). Unknown keys in the top level,
   ``message`` (see ``ALLOWED_MESSAGE_KEYS``), ``routing``, ``metadata`` and ``expiry`` are
   refused. Malformed JSON or any other shape -> 400
   ``{"message": "<what is wrong>", "type": "invalid_request_error"}``.
6. Accepted -> 202 ``{"requestId": "1-<hex>"}``, appended to ``standin.requests``.

``fail_first(status, retry_after, seconds=..., only=...)`` fails the FIRST ``POST /send`` of
every ``Idempotency-Key`` (of the keys ``only`` selects) from then on, as ``fail_next`` does,
answering after ``seconds``; the key's next attempt goes through. Rules are tried in the order
they were added. A key counts as seen from its first ``POST /send`` on.

``trickle_next(n, seconds_per_byte)`` processes the request (the send is recorded) and then
writes its answer, status line and headers included, one byte at a time, sleeping between two
bytes: every read of the client gets a byte well within its timeout, so only a total deadline
ends the request. It stops when the client goes away or the server stops.

``delay_next(n, seconds)`` sleeps before writing the answer. By default the request is
processed first (``process_first=True``): the send is recorded even though the client
may have timed out, which models "Courier got it, we never heard back" - a retry with
the same key then gets the replayed answer. With ``process_first=False`` the sleep comes
before processing (a slow network on the way in: nothing is recorded until it ends).
``latency`` is added to every answer.
Sleeps are cut short when the server stops.

Records (all lists are snapshots, copied under a lock):

* ``requests``: accepted first-time sends, dicts ``idempotency_key``, ``body`` (parsed
  JSON), ``headers`` (lower-cased names), ``request_id``, ``at`` (``time.monotonic()``).
* ``replays``: dicts ``idempotency_key``, ``status``, ``response`` (replayed body),
  ``body``, ``same_body``, ``headers``, ``at``.
* ``injected``: dicts ``kind`` ("fail" / "drop"), ``status``, ``idempotency_key``,
  ``body``, ``at``.
* ``log``: every request seen: ``method``, ``path``, ``status`` (None if dropped),
  ``outcome`` (accepted / replayed / rejected / unauthorized / not_found / injected /
  dropped), ``idempotency_key``, ``at``.
* ``sends_by_key()``: ``{key: count of first-time accepted sends}`` (key ``None`` for
  sends without a key).

``reset()`` clears records, pending faults and the idempotency store.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CourierStandin"]

_RECIPIENT_KEYS = ("email", "user_id", "phone_number")
_ROUTING_METHODS = ("single", "all")
_MAX_TAGS, _MAX_TAG = 9, 30
_ISO_DURATION = re.compile(r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?")


class _Fault:
    __slots__ = ("remaining", "params")

    def __init__(self, remaining: int, **params: Any) -> None:
        self.remaining = remaining
        self.params = params


def _error(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"message": message, "type": type_}


def validate_send_body(body: Any, allowed_message_keys: frozenset[str]) -> str | None:
    """Return a description of what is wrong with a ``POST /send`` body, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if "message" not in body:
        return "Missing required property: message"
    extra = sorted(set(body) - {"message"})
    if extra:
        return f"Unknown top-level properties: {', '.join(extra)}"
    msg = body["message"]
    if not isinstance(msg, dict):
        return "message must be an object"
    extra = sorted(set(msg) - allowed_message_keys)
    if extra:
        return f"Unknown properties in message: {', '.join(extra)}"

    if "to" not in msg:
        return "Missing required property: message.to"
    to = msg["to"]
    if not isinstance(to, dict):
        return "message.to must be an object"
    if not any(isinstance(to.get(k), str) and to.get(k) for k in _RECIPIENT_KEYS):
        return "message.to must include at least one of: email, user_id, phone_number"
    for k in _RECIPIENT_KEYS:
        if k in to and not isinstance(to[k], str):
            return f"message.to.{k} must be a string"

    if "template" not in msg:
        return "Missing required property: message.template"
    template = msg["template"]
    if not isinstance(template, str) or not template.strip():
        return "message.template must be a non-empty string"

    if "data" in msg and not isinstance(msg["data"], dict):
        return "message.data must be an object"

    if "routing" in msg:
        routing = msg["routing"]
        if not isinstance(routing, dict):
            return "message.routing must be an object"
        extra = sorted(set(routing) - {"method", "channels"})
        if extra:
            return f"Unknown properties in message.routing: {', '.join(extra)}"
        if routing.get("method") not in _ROUTING_METHODS:
            return 'message.routing.method must be "single" or "all"'
        channels = routing.get("channels")
        if not isinstance(channels, list) or not channels:
            return "message.routing.channels must be a non-empty array of strings"
        if not all(isinstance(c, str) and c for c in channels):
            return "message.routing.channels must contain only non-empty strings"
    if "metadata" in msg:
        problem = _metadata_problem(msg["metadata"])
        if problem:
            return problem
    if "expiry" in msg:
        return _expiry_problem(msg["expiry"])
    return None


def _metadata_problem(metadata: Any) -> str | None:
    if not isinstance(metadata, dict):
        return "message.metadata must be an object"
    extra = sorted(set(metadata) - {"event", "tags", "trace_id", "utm"})
    if extra:
        return f"Unknown properties in message.metadata: {', '.join(extra)}"
    for key in ("event", "trace_id"):
        if key in metadata and not isinstance(metadata[key], str):
            return f"message.metadata.{key} must be a string"
    if "utm" in metadata and not isinstance(metadata["utm"], dict):
        return "message.metadata.utm must be an object"
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        return "message.metadata.tags must be an array of non-empty strings"
    if len(tags) > _MAX_TAGS:
        return f"message.metadata.tags: at most {_MAX_TAGS} tags"
    long = [t for t in tags if len(t) > _MAX_TAG]
    if long:
        return f"message.metadata.tags: a tag is at most {_MAX_TAG} characters ({long[0]!r})"
    return None


def _expiry_problem(expiry: Any) -> str | None:
    if not isinstance(expiry, dict):
        return "message.expiry must be an object"
    extra = sorted(set(expiry) - {"expires_in", "expires_at"})
    if extra:
        return f"Unknown properties in message.expiry: {', '.join(extra)}"
    if "expires_in" not in expiry:
        return "Missing required property: message.expiry.expires_in"
    expires_in = expiry["expires_in"]
    if isinstance(expires_in, bool) or not (
            (isinstance(expires_in, int) and expires_in >= 0)
            or (isinstance(expires_in, str) and _ISO_DURATION.fullmatch(expires_in))):
        return "message.expiry.expires_in must be milliseconds (an integer >= 0) or an ISO 8601 duration"
    if "expires_at" in expiry and expiry["expires_at"] is not None and _instant(expiry["expires_at"]) is None:
        return "message.expiry.expires_at must be epoch milliseconds or an ISO 8601 date-time with an offset"
    return None


def _instant(value: Any) -> datetime | None:
    """An epoch (milliseconds) or an ISO 8601 date-time with its offset, as Courier reads expires_at."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        try:
            found = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return found if found.tzinfo is not None else None
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CourierStandin/1.0"
    timeout = 10  # idle keep-alive connections die on their own
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, each answer waits ~40 ms
    standin: CourierStandin  # set on the per-instance subclass

    def setup(self) -> None:
        super().setup()
        self.standin._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.standin._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _any(self) -> None:
        self.standin._handle(self)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    # -- helpers used by CourierStandin._handle --------------------------------

    def read_body(self) -> bytes | None:
        """The body, or None when the client went away before sending all of it (a real
        server never processes such a request: there is no request to answer)."""
        length = self.headers.get("Content-Length")
        try:
            n = int(length) if length is not None else 0
        except ValueError:
            n = 0
        if n <= 0:
            return b""
        try:
            data = self.rfile.read(n)
        except OSError:
            return None
        return data if len(data) == n else None

    def answer(self, status: int, body: dict[str, Any], extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # client went away (e.g. it timed out)
            self.close_connection = True

    def answer_slowly(self, status: int, body: dict[str, Any], seconds_per_byte: float, stop: threading.Event) -> None:
        data = json.dumps(body).encode()
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        self.close_connection = True
        for i in range(len(head + data)):
            if stop.wait(seconds_per_byte):
                return
            try:
                self.wfile.write((head + data)[i:i + 1])
                self.wfile.flush()
            except OSError:  # the client gave up
                return

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet on resets
        pass


class CourierStandin:
    """Fake Courier ``POST /send`` endpoint; see the module docstring for semantics."""

    ALLOWED_MESSAGE_KEYS = frozenset({"to", "template", "data", "routing", "metadata", "expiry"})

    def __init__(self, token: str = "tok", *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.latency = 0.0
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._reset_state()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> CourierStandin:
        handler = type("_BoundHandler", (_Handler,), {"standin": self})
        self._stop.clear()
        self._server = _Server((self._host, self._port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="courier-standin", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stop.set()  # wakes delayed handlers
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> CourierStandin:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("CourierStandin is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- controls -------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, retry_after: float | int | str | None = None) -> None:
        """The next ``n`` POST /send answer ``status`` (not stored for replay, not a send)."""
        if status != 429 and not 500 <= status <= 599:
            raise ValueError("fail_next status must be 429 or 5xx")
        with self._lock:
            self._faults["fail"].append(_Fault(n, status=status, retry_after=retry_after))

    def fail_first(self, status: int = 503, retry_after: float | int | str | None = None, *, seconds: float = 0.0,
                   only: Callable[[str], bool] | None = None) -> None:
        """The first POST /send of each Idempotency-Key (that ``only`` selects) answers ``status``
        after ``seconds`` (not stored for replay, not a send): its retry goes through."""
        if status != 429 and not 500 <= status <= 599:
            raise ValueError("fail_first status must be 429 or 5xx")
        with self._lock:
            self._first_failures.append(_Fault(0, status=status, retry_after=retry_after, seconds=seconds, only=only))

    def delay_next(self, n: int, seconds: float, *, process_first: bool = True) -> None:
        """The next ``n`` POST /send sleep ``seconds`` before answering."""
        with self._lock:
            self._faults["delay"].append(_Fault(n, seconds=seconds, process_first=process_first))

    def trickle_next(self, n: int, seconds_per_byte: float) -> None:
        """The next ``n`` POST /send are recorded, then answered one byte every ``seconds_per_byte``."""
        with self._lock:
            self._faults["trickle"].append(_Fault(n, seconds=seconds_per_byte))

    def drop_next(self, n: int = 1, *, process_first: bool = False) -> None:
        """The next ``n`` POST /send get their connection closed without an answer."""
        with self._lock:
            self._faults["drop"].append(_Fault(n, process_first=process_first))

    def reset(self) -> None:
        with self._lock:
            self._reset_state()

    # -- records --------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def replays(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._replays)

    @property
    def injected(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._injected)

    @property
    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def sends_by_key(self) -> dict[str | None, int]:
        with self._lock:
            return dict(Counter(r["idempotency_key"] for r in self._requests))

    # -- internals ------------------------------------------------------------

    def _reset_state(self) -> None:
        self._requests: list[dict[str, Any]] = []
        self._replays: list[dict[str, Any]] = []
        self._injected: list[dict[str, Any]] = []
        self._log: list[dict[str, Any]] = []
        self._stored: dict[str, tuple[int, dict[str, Any], Any]] = {}  # key -> (status, response, body)
        self._faults: dict[str, list[_Fault]] = {"fail": [], "delay": [], "drop": [], "trickle": []}
        self._first_failures: list[_Fault] = []  # fail_first rules, in the order added
        self._keys_seen: set[str] = set()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _take(self, kind: str) -> _Fault | None:
        queue = self._faults[kind]
        while queue and queue[0].remaining <= 0:
            queue.pop(0)
        if not queue:
            return None
        queue[0].remaining -= 1
        return queue[0]

    def _first_failure(self, key: str | None) -> _Fault | None:
        """The fail_first rule that fails this request, if it is its key's first. Lock held."""
        if key is None or key in self._keys_seen:
            return None
        self._keys_seen.add(key)
        return next((r for r in self._first_failures if r.params["only"] is None or r.params["only"](key)), None)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _handle(self, h: _Handler) -> None:
        raw = h.read_body()
        if raw is None:
            with self._lock:
                self._log.append({"method": h.command, "path": h.path, "status": None, "outcome": "truncated",
                                      "idempotency_key": h.headers.get("Idempotency-Key"), "at": time.monotonic()})
            h.close_connection = True
            return
        path = h.path.split("?", 1)[0].rstrip("/") or "/"
        key = h.headers.get("Idempotency-Key")
        headers = {k.lower(): v for k, v in h.headers.items()}
        now = time.monotonic()

        def log(status: int | None, outcome: str) -> None:
            self._log.append({"method": h.command, "path": h.path, "status": status, "outcome": outcome,
                                  "idempotency_key": key, "at": now})

        if h.command != "POST" or path != "/send":
            with self._lock:
                log(404, "not_found")
            self._sleep(self.latency)
            h.answer(404, _error(f"No route for {h.command} {path}", "not_found"))
            return

        try:
            parsed: Any = json.loads(raw) if raw else None
            json_ok = raw != b""
        except (ValueError, UnicodeDecodeError):
            parsed, json_ok = None, False

        with self._lock:
            drop = self._take("drop")
            fail = self._take("fail")
            delay = self._take("delay")
            trickle = self._take("trickle")
            first = self._first_failure(key)
        hold = 0.0
        if fail is None and first is not None:
            fail, hold = first, first.params["seconds"]  # Courier holds the first attempt, then refuses it
        delay_s = delay.params["seconds"] if delay is not None else 0.0
        if delay is not None and not delay.params["process_first"]:
            self._sleep(delay_s)  # the request "arrives" late: processed after the sleep
            delay_s = 0.0
        drop_first = drop is not None and not drop.params["process_first"]

        with self._lock:
            if drop_first:  # a dropped request never gets an answer, even if also failed
                self._injected.append(
                    {"kind": "drop", "status": None, "idempotency_key": key, "body": parsed, "at": now}
                )
                log(None, "dropped")
                status, response, extra = 0, {}, {}
            elif fail is not None:
                status = fail.params["status"]
                response = _error("Too many requests" if status == 429 else "Injected failure",
                                  "rate_limit_error" if status == 429 else "api_error")
                extra = {}
                if fail.params["retry_after"] is not None:
                    extra["Retry-After"] = str(fail.params["retry_after"])
                self._injected.append(
                    {"kind": "fail", "status": status, "idempotency_key": key, "body": parsed, "at": now}
                )
                log(status, "injected")
            else:
                status, response, extra = self._process(headers, key, raw, parsed, json_ok, now, log)
                if drop is not None:  # process_first drop: recorded/stored, then no answer
                    self._injected.append(
                        {"kind": "drop", "status": None, "idempotency_key": key, "body": parsed, "at": now}
                    )
                    self._log[-1]["outcome"] += "+dropped"

        self._sleep(delay_s + hold + self.latency)
        if drop is not None:
            h.drop()
            return
        if trickle is not None:
            h.answer_slowly(status, response, trickle.params["seconds"], self._stop)
            return
        h.answer(status, response, extra)

    def _process(self, headers, key, raw, parsed, json_ok, now, log):
        """Auth, replay, validation, acceptance. Called with the lock held."""
        auth = headers.get("authorization", "")
        expected = f"Bearer {self.token}"
        if not hmac.compare_digest(auth.encode(), expected.encode()):
            log(401, "unauthorized")
            return 401, {"message": "Unauthorized"}, {}

        if key is not None and key in self._stored:
            status, response, first_body = self._stored[key]
            self._replays.append(
                {
                    "idempotency_key": key,
                    "status": status,
                    "response": copy.deepcopy(response),
                    "body": parsed,
                    "same_body": (parsed == first_body),
                    "headers": headers,
                    "at": now,
                }
            )
            log(status, "replayed")
            return status, copy.deepcopy(response), {}

        if not json_ok:
            problem = "Request body is not valid JSON" if raw else "Request body is empty"
        else:
            problem = validate_send_body(parsed, self.ALLOWED_MESSAGE_KEYS)
        if problem is not None:
            status, response = 400, _error(problem)
            log(400, "rejected")
        else:
            request_id = f"1-{uuid.uuid4().hex}"
            status, response = 202, {"requestId": request_id}
            self._requests.append({"idempotency_key": key, "body": parsed, "headers": headers,
                                       "request_id": request_id, "at": now})
            log(202, "accepted")
        if key is not None:
            self._stored[key] = (status, copy.deepcopy(response), parsed)
        return status, response, {}
