"""A small asyncio HTTP/1.1 load generator: keep-alive connections to 127.0.0.1 only.

It is deliberately raw (pre-encoded requests, a minimal response parser) so that on a 2-core
machine the client costs as little CPU as possible and the server is what is measured. Every
run is bounded both in requests and in time.

closed_loop: N connections, each sends its next request as soon as the previous answer is in
(throughput). open_loop: requests start on a fixed schedule (`rate` per second) whatever the
server does, and latency is counted from the scheduled start, so a stalled server is not
flattered (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


def post(path: str, body: bytes, port: int, headers: dict[str, str] | None = None) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    sent: int = 0
    done: int = 0
    elapsed: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    def ok(self, status: int = 202) -> int:
        return self.statuses.get(status, 0)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).strip().split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        if close:
            raise ConnectionResetError("server closed the connection")
        return status

    def close(self) -> None:
        self.writer.close()


async def _closed(port: int, requests: Sequence[bytes], connections: int, seconds: float, warmup: float) -> Result:
    result = Result()
    conns = [await _Conn.open(port) for _ in range(connections)]
    index = 0
    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + seconds
    counted_from: list[float] = []

    async def worker(conn: _Conn) -> None:
        nonlocal index
        while index < len(requests):
            now = time.perf_counter()
            if now >= deadline:
                return
            request = requests[index]
            index += 1
            t0 = time.perf_counter()
            try:
                status = await conn.roundtrip(request)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                conn.close()
                conn = await _Conn.open(port)
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= deadline:
                result.done += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies.append(t1 - t0)
                if not counted_from:
                    counted_from.append(t0)

    await asyncio.gather(*(worker(c) for c in conns))
    end = min(time.perf_counter(), deadline)
    result.sent = index
    result.elapsed = max(1e-9, end - measure_from)
    for c in conns:
        c.close()
    return result


def closed_loop(port: int, requests: Sequence[bytes], connections: int = 32, seconds: float = 5.0,
                warmup: float = 1.0) -> Result:
    """Throughput with `connections` busy connections for `seconds` after `warmup` (bounded by
    len(requests) too). Only answers both started and finished inside the window count."""
    return asyncio.run(_closed(port, requests, connections, seconds, warmup))


async def _open(port: int, requests: Sequence[bytes], rate: float, seconds: float, connections: int) -> Result:
    result = Result()
    # last in, first out: the connection used last is reused first, so the pool's tail may sit
    # idle past the server's keep-alive timeout (uvicorn: 5 s) and be closed by it, as any
    # client pool sees; a request on such a connection is retried once on a new one.
    idle: asyncio.LifoQueue[_Conn] = asyncio.LifoQueue()
    for _ in range(connections):
        idle.put_nowait(await _Conn.open(port))
    total = min(len(requests), int(rate * seconds))
    start = time.perf_counter() + 0.05
    tasks = []

    async def one(i: int, scheduled: float) -> None:
        conn = await idle.get()
        try:
            try:
                status = await conn.roundtrip(requests[i])
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()
                conn = await _Conn.open(port)
                status = await conn.roundtrip(requests[i])
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, OSError):
            result.errors += 1
            conn.close()
            idle.put_nowait(await _Conn.open(port))
            return
        result.latencies.append(time.perf_counter() - scheduled)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.done += 1
        idle.put_nowait(conn)

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
        result.sent += 1
    # bounded: whatever has not answered 10 s after the last start counts as an error
    done, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
    for t in pending:
        t.cancel()
    result.errors += len(pending)
    result.elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    return result


def open_loop(port: int, requests: Sequence[bytes], rate: float, seconds: float, connections: int = 64) -> Result:
    """`rate` requests per second for `seconds` on a fixed schedule; latency from the scheduled start."""
    return asyncio.run(_open(port, requests, rate, seconds, connections))
