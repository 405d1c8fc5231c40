"""The hook's intake: requests queued while the thread is busy go in one group, each request gets
its own answer or its own error, and the thread outlives a failed transaction."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from engine.http.intake import MAX_EVENTS, Intake, IntakeClosed
from engine.store.repository import IngestResult


class Recorder:
    """Stands in for the runtime's `ingest_many`: records each group; the first call waits until
    released, so that the requests made meanwhile queue up behind it."""

    def __init__(self) -> None:
        self.groups: list[list[list[Any]]] = []
        self.release = threading.Event()
        self.fail_next_group: BaseException | None = None

    def ingest_many(self, batches: list[list[Any]]) -> list[Any]:
        self.groups.append(batches)
        if len(self.groups) == 1:
            assert self.release.wait(10)
        if self.fail_next_group is not None:
            exc, self.fail_next_group = self.fail_next_group, None
            raise exc
        return [ValueError(f"refused {b[0]}") if b[0].startswith("bad") else IngestResult(list(b), [], len(b), 0)
                for b in batches]


async def _wait_for(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_requests_queued_meanwhile_share_one_group_and_get_their_own_answers() -> None:
    runtime = Recorder()
    intake = Intake(runtime)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(intake.submit(["a1"]))
        await _wait_for(lambda: len(runtime.groups) == 1)
        rest = [asyncio.ensure_future(intake.submit([f"{name}", f"{name}-2"])) for name in ("b", "bad", "c")]
        await asyncio.sleep(0.05)
        runtime.release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    a, b, bad, c = asyncio.run(scenario())
    assert runtime.groups == [[["a1"]], [["b", "b-2"], ["bad", "bad-2"], ["c", "c-2"]]]
    assert a.accepted == ["a1"] and b.accepted == ["b", "b-2"] and c.accepted == ["c", "c-2"]
    assert isinstance(bad, ValueError) and str(bad) == "refused bad"
    intake.close()


def test_a_failed_transaction_fails_its_group_and_the_thread_goes_on() -> None:
    runtime = Recorder()
    runtime.release.set()
    runtime.fail_next_group = RuntimeError("disk I/O error")
    intake = Intake(runtime)

    async def scenario() -> tuple[Any, Any]:
        failed = await asyncio.gather(intake.submit(["x"]), return_exceptions=True)
        return failed[0], await intake.submit(["y"])

    failed, later = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and later.accepted == ["y"]
    intake.close()


def test_a_group_stops_growing_at_max_events() -> None:
    runtime = Recorder()
    intake = Intake(runtime)
    big = [f"e{i}" for i in range(MAX_EVENTS - 1)]

    async def scenario() -> None:
        first = asyncio.ensure_future(intake.submit(["first"]))
        await _wait_for(lambda: len(runtime.groups) == 1)
        queued = [asyncio.ensure_future(intake.submit(batch)) for batch in (big, ["one"], ["two"])]
        await asyncio.sleep(0.05)
        runtime.release.set()
        await asyncio.gather(first, *queued)

    asyncio.run(scenario())
    assert [sum(len(b) for b in group) for group in runtime.groups] == [1, MAX_EVENTS, 1]
    intake.close()


def test_close_finishes_what_is_queued_and_refuses_the_rest() -> None:
    runtime = Recorder()
    intake = Intake(runtime)

    async def scenario() -> Any:
        first = asyncio.ensure_future(intake.submit(["a"]))
        await _wait_for(lambda: len(runtime.groups) == 1)
        second = asyncio.ensure_future(intake.submit(["b"]))
        await asyncio.sleep(0.05)
        closing = asyncio.get_running_loop().run_in_executor(None, intake.close)
        await asyncio.sleep(0.05)
        runtime.release.set()
        await closing
        with pytest.raises(IntakeClosed):
            await intake.submit(["c"])
        return await asyncio.gather(first, second)

    a, b = asyncio.run(scenario())
    assert (a.accepted, b.accepted) == (["a"], ["b"])


def test_an_idle_intake_lets_its_thread_end_and_starts_another() -> None:
    runtime = Recorder()
    runtime.release.set()
    intake = Intake(runtime, idle_s=0.05)

    async def one(name: str) -> Any:
        return await intake.submit([name])

    assert asyncio.run(one("a")).accepted == ["a"]
    first = intake._thread
    assert first is not None
    first.join(5)
    assert not first.is_alive() and intake._thread is None
    assert asyncio.run(one("b")).accepted == ["b"]
    assert intake._thread is not None and intake._thread is not first
    intake.close()
