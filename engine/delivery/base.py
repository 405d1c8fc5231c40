"""The delivery contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from .message import Message


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to.

    `sent`: the provider accepted it (`request_id`). `retry`: a rate limit, a server error or a
    timeout; try again later (`retry_after` seconds when the provider said). `failed`: a
    client error that another attempt would not fix (`error` says why). `paused`: the provider
    refused this process's credentials, not the message; try again after `retry_after` seconds,
    without counting this attempt.
    """

    status: Literal["sent", "retry", "failed", "paused"]
    request_id: str | None = None
    error: str | None = None
    retry_after: float | None = None


class Backend(Protocol):
    name: str

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Send one message, in the backend's own wire form, with its Idempotency-Key.

        Must not raise for provider or network errors: they are Outcomes."""
        ...
