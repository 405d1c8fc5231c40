"""What can go wrong when posting events, as types a caller can catch.

`EngineRefused` and its subclasses: the engine answered 4xx and stored nothing; sending the same
request again gets the same answer. `EngineUnavailable`: the engine could not be reached, or kept
answering 429/5xx, through every retry; nothing is known to be stored, and sending again is safe
(the engine deduplicates on event id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class EngineError(Exception):
    """Any failure to hand events to the engine."""


@dataclass(frozen=True)
class Problem:
    """One reason an event was refused: a JSON path into the request body, and what is wrong there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class EngineRefused(EngineError):
    """The engine answered with a 4xx: the request is wrong, and retrying it will not help."""

    def __init__(self, status: int, message: str, problems: tuple[Problem, ...] = (), body: Any = None):
        self.status, self.message, self.problems, self.body = status, message, problems, body
        detail = "".join(f"\n  {p}" for p in problems)
        super().__init__(f"{status}: {message}{detail}")


class BadRequest(EngineRefused):
    """400: the body is not JSON the engine can read."""


class Unauthorized(EngineRefused):
    """401: a missing or wrong token or signature (or a signature the engine has already seen)."""


class PayloadTooLarge(EngineRefused):
    """413: the body is larger than the engine accepts, or a batch holds more than 1000 events."""


class EventRefused(EngineRefused):
    """422: an event does not fit its type's schema or a limit; `problems` names each path."""


class EngineUnavailable(EngineError):
    """Every attempt failed with a connection error, a timeout, a 429 or a 5xx."""

    def __init__(self, attempts: int, last: str):
        self.attempts, self.last = attempts, last
        super().__init__(f"the engine did not accept the request after {attempts} attempt(s): {last}")


_BY_STATUS: dict[int, type[EngineRefused]] = {400: BadRequest, 401: Unauthorized, 413: PayloadTooLarge,
                                              422: EventRefused}


def refused(status: int, body: Any) -> EngineRefused:
    """The error for a 4xx answer; `body` is the parsed JSON (`{"error", "problems"}`) or text."""
    message = f"HTTP {status}"
    problems: tuple[Problem, ...] = ()
    if isinstance(body, dict):
        message = str(body.get("error") or message)
        raw = body.get("problems")
        if isinstance(raw, list):
            problems = tuple(
                Problem(str(p.get("path", "")), str(p.get("message", ""))) for p in raw if isinstance(p, dict)
            )
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    return _BY_STATUS.get(status, EngineRefused)(status, message, problems, body)
