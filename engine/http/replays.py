"""Signed requests seen before: a retry of an accepted one gets the first answer again.

A signed request is recorded (its signature, or its Standard Webhooks id, with a digest of its
body) before its events are stored, and its answer is kept once they are. A copy of it that
comes later, or at the same moment, stores nothing: it gets that answer, waiting for it if the
first copy is still being stored. Another body under the same signature or id is refused. A
request that fails releases its record, so its retry goes through. The records live in the
store, so every replica of the hook sees them.

Courier's webhooks are only remembered once applied (`seen`, `remember`): a copy under the same
signature is refused, as Courier signs each retry anew.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from starlette.concurrency import run_in_threadpool

from ..clock import utcnow
from ..store.repository import Receipt, Store

WAIT_S = 10.0  # how long a copy waits for its first copy's answer before a 503
POLL_S = 0.05


@dataclass(frozen=True)
class Signed:
    """What a verified request is recorded under (`key`) and which request it is (`request`)."""

    key: str
    request: str

    @classmethod
    def ingest(cls, stamp: int, body: bytes) -> Signed:
        """`X-Engine-Signature`: its signature covers the timestamp and the body, and so does its key."""
        return cls(hashlib.sha256(f"ingest:{stamp}.".encode() + body).hexdigest(), _digest(body))

    @classmethod
    def webhook(cls, msg_id: str, body: bytes) -> Signed:
        """Standard Webhooks: a sender's retry keeps the message id and signs anew; the id is the key."""
        return cls(hashlib.sha256(f"webhook-id:{msg_id}".encode()).hexdigest(), _digest(body))


def courier_key(stamp: int, body: bytes) -> str:
    """What a Courier webhook is remembered under: its signature covers the timestamp and the body."""
    return hashlib.sha256(f"courier:{stamp}.".encode() + body).hexdigest()


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Seen:
    outcome: Literal["new", "answered", "other request", "in flight"]
    answer: str | None = None


class Replays:
    def __init__(self, store: Store, window: timedelta, wait_s: float = WAIT_S, poll_s: float = POLL_S):
        self.store, self.window, self.wait_s, self.poll_s = store, window, wait_s, poll_s

    async def claim(self, signed: Signed) -> Seen:
        """`new`: this request is the first, go on (then `answered` or `release`); `answered`: a copy
        of an accepted request, with its answer; `other request`: the key was used for another
        body; `in flight`: the first copy is still being stored after `wait_s`. Store errors rise."""
        deadline = time.monotonic() + self.wait_s
        found = await self._claim(signed)
        while (seen := _verdict(found, signed)) is None:
            if time.monotonic() >= deadline:
                return Seen("in flight")
            await asyncio.sleep(self.poll_s)
            found = await self._receipt_or_claim(signed)
        return seen

    async def _receipt_or_claim(self, signed: Signed) -> Receipt | None:
        found = await run_in_threadpool(self.store.signature_receipt, signed.key)
        if found is None:  # the first copy failed and released it: this one goes on in its place
            return await self._claim(signed)
        return found

    async def _claim(self, signed: Signed) -> Receipt | None:
        return await run_in_threadpool(self.store.claim_signature, signed.key, signed.request, utcnow(), self.window)

    async def answered(self, signed: Signed, answer: str) -> None:
        await run_in_threadpool(self.store.answer_signature, signed.key, answer)

    async def release(self, signed: Signed) -> None:
        await run_in_threadpool(self.store.forget_signature, signed.key)

    async def seen(self, key: str) -> bool:
        """Whether `key` (`courier_key`) was remembered within the window."""
        return bool(await run_in_threadpool(self.store.signature_seen, key, utcnow(), self.window))

    async def remember(self, key: str) -> None:
        await run_in_threadpool(self.store.remember_signature, key, utcnow(), self.window)


def _verdict(found: Receipt | None, signed: Signed) -> Seen | None:
    """What the key's receipt says of this request; None while its first copy is being stored."""
    if found is None:
        return Seen("new")
    if found.request != signed.request:
        return Seen("other request")
    if found.answer is not None:
        return Seen("answered", found.answer)
    return None
