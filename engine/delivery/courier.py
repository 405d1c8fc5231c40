"""Delivery through Courier with the official SDK (trycourier).

Retries live in the engine, not in the SDK (max_retries=0): a retry is a durable row update with
backoff, so it survives a restart, and the same Idempotency-Key goes with every attempt.

The message goes out through the SDK's documented request method (`client.post(path, body=...,
cast_to=httpx.Response)`), not `client.send.message`: the body the core rendered is already in
Courier's wire format, and skipping the SDK's walk over it (typed-dict transform) and its
response model saves a third of the CPU a send costs. Authentication, base URL, timeouts and
the exceptions stay the SDK's.
"""

from __future__ import annotations

from typing import Any

import courier
import httpx

from .base import Outcome

RETRYABLE_STATUS = {408, 409, 425, 429}


class CourierBackend:
    name = "courier"

    def __init__(self, token: str, base_url: str | None = None, timeout: float = 10.0):
        self.client = courier.Courier(api_key=token, base_url=base_url, timeout=timeout, max_retries=0)

    def send(self, message: dict[str, Any], idempotency_key: str) -> Outcome:
        try:
            response = self.client.post("/send", body={"message": message["message"]}, cast_to=httpx.Response,
                                        options={"headers": {"Idempotency-Key": idempotency_key}})
        except courier.APITimeoutError:
            return Outcome("retry", error="timeout waiting for Courier")
        except courier.APIConnectionError as exc:
            return Outcome("retry", error=f"connection error: {type(exc.__cause__ or exc).__name__}")
        except courier.APIStatusError as exc:
            code = exc.status_code
            detail = _detail(exc)
            if code >= 500 or code in RETRYABLE_STATUS:
                return Outcome("retry", error=f"HTTP {code}: {detail}", retry_after=_retry_after(exc))
            return Outcome("failed", error=f"HTTP {code}: {detail}")
        return Outcome("sent", request_id=_request_id(response))


def _request_id(response: httpx.Response) -> str | None:
    """Courier answers 202 {"requestId": ...}."""
    try:
        body = response.json()
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
