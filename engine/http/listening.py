"""uvicorn's server, saying where it listens."""

from __future__ import annotations

import logging
import socket

import uvicorn

log = logging.getLogger("engine")


class ListeningServer(uvicorn.Server):
    """uvicorn's server, which logs `listening on http://host:port` once it listens (the port it
    got, for port 0). Run with `log_config=None`, uvicorn's own lines go through the engine's log
    and its format."""

    serves = ""  # what is served there, for the line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                log.info("listening on http://%s:%d%s", shown, port, self.serves)
