"""Delivery through Courier with the official SDK (trycourier).

Retries live in the engine, not in the SDK (max_retries=0): a retry is a durable row update with
backoff, so it survives a restart, and the same Idempotency-Key goes with every attempt.
"""

from __future__ import annotations

from typing import Any

import courier

from .base import Outcome

RETRYABLE_STATUS = {408, 409, 425, 429}


class CourierBackend:
    name = "courier"

    def __init__(self, token: str, base_url: str | None = None, timeout: float = 10.0):
        self.client = courier.Courier(api_key=token, base_url=base_url, timeout=timeout, max_retries=0)

    def send(self, message: dict[str, Any], idempotency_key: str) -> Outcome:
        try:
            response = self.client.send.message(message=message["message"], idempotency_key=idempotency_key)
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
        return Outcome("sent", request_id=response.request_id)


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
