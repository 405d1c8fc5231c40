"""The reliability suite uses the runtime suite's service fixtures (PostgreSQL, Redis), and an
in-process ASGI client for the hook (fuzzing and auth tests)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, inspect, select, table

from tests.runtime.conftest import (  # noqa: F401  (fixtures)
    config,
    db_url,
    make_runtime,
    pg_url,
    project,
    redis_url,
    sqlite_url,
    standin,
)

REQUEST_DEADLINE_S = 5.0  # "every request returns within a few seconds"


class AsgiClient:
    """Drives the real Starlette app in-process through httpx.ASGITransport.

    The app runs on an event loop in a thread of its own, so a request that hangs (even one that
    blocks the loop) is noticed: `request` gives up after `deadline` seconds and fails the test.
    Unhandled exceptions come back as the 500 answer Starlette sends, not as exceptions.
    `peer` is the client address the app sees (loopback by default).
    """

    def __init__(self, app: Any, peer: tuple[str, int] = ("127.0.0.1", 50123), deadline: float = REQUEST_DEADLINE_S):
        self.deadline = deadline
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="asgi-client", daemon=True)
        self.thread.start()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=peer)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://engine.test", timeout=deadline)
        self.slowest = 0.0

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(self.client.request(method, url, **kwargs), self.loop)
        started = time.monotonic()
        try:
            response = future.result(self.deadline)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(f"{method} {url} did not answer within {self.deadline} s (hang)") from None
        self.slowest = max(self.slowest, time.monotonic() - started)
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def row_counts(engine: Any) -> dict[str, int]:
    """Rows in every table of the store (whatever the migrations created), alembic's excepted."""
    names = sorted(n for n in inspect(engine).get_table_names() if n != "alembic_version")
    with engine.connect() as conn:
        return {n: conn.scalar(select(func.count()).select_from(table(n))) for n in names}


@pytest.fixture
def asgi_client() -> Iterator[Callable[..., AsgiClient]]:
    """asgi_client(app, peer=(host, port)) -> AsgiClient; all closed after the test."""
    made: list[AsgiClient] = []

    def build(app: Any, **kwargs: Any) -> AsgiClient:
        client = AsgiClient(app, **kwargs)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()
