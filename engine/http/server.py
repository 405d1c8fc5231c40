"""The HTTP server: uvicorn, with a deadline on reading every request.

uvicorn closes a keep-alive connection that stays idle (`timeout_keep_alive`), but it starts that
timer only once a response has gone out, and stops it at the first byte that arrives: a client
that connects and sends nothing, or half a request line, or a body a byte a minute, holds its
connection (and a file descriptor) for ever. About a thousand such clients use up the common
limit of 1 024 open files, and nobody else gets in. Here a request must arrive in full, headers
and body, within `READ_DEADLINE_S` of the connection opening or of the previous response;
otherwise the connection is closed. A request that has arrived is never cut off, however long
the application takes to answer it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("engine.http")

READ_DEADLINE_S = 10.0  # for a whole request (headers and body) to arrive
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
_READING = (h11.IDLE, h11.SEND_BODY)  # the client's states while its request is still arriving


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request (see the module docstring)."""

    read_deadline_s = READ_DEADLINE_S

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(restart=True)  # the next request on this connection gets a deadline of its own

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _watch(self, restart: bool = False) -> None:
        """A timer runs while a request is arriving; it stops once the request is in."""
        if self.transport.is_closing() or self.conn.their_state not in _READING:
            self._stop_timer()
        elif restart or self._read_timer is None:
            self._stop_timer()
            self._read_timer = self.loop.call_later(self.read_deadline_s, self._read_too_slow)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_too_slow(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing() and self.conn.their_state in _READING:
            self.transport.close()


def protocol(read_deadline_s: float) -> type[DeadlineH11Protocol]:
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"read_deadline_s": read_deadline_s})


def server_config(app: Any, host: str, port: int, *, read_deadline_s: float = READ_DEADLINE_S,
                  keep_alive_s: int = KEEP_ALIVE_S, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the engine's app: the h11 protocol with the read deadline."""
    settings: dict[str, Any] = {"log_level": "warning", "access_log": False, **options}
    return uvicorn.Config(app, host=host, port=port, http=protocol(read_deadline_s), timeout_keep_alive=keep_alive_s,
                          **settings)


def raise_open_file_limit() -> int:
    """Lift the soft limit of open files to the hard one (often 1 024 against 4 096 or more): each
    connection, client or idle, holds a file. Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft
    wanted = max(soft, 65_536) if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit above %d", soft)
    return soft
