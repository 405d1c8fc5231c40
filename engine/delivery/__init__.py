"""Delivery backends: one interface, Courier for real and an outbox for running without it.

The Courier backend is imported when first asked for: its SDK takes about half a second to
import, which the commands that never call Courier (preview, diff, backtest, test) need not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..settings import Settings
from .base import Backend, Outcome
from .message import Message, courier_body
from .outbox import OutboxBackend

if TYPE_CHECKING:
    from .courier import CourierBackend


def backend_for(settings: Settings) -> Backend:
    if settings.courier_token:
        from .courier import CourierBackend

        return CourierBackend(settings.courier_token, settings.courier_base_url, settings.courier_timeout)
    return OutboxBackend()


def __getattr__(name: str) -> Any:
    if name == "CourierBackend":
        from .courier import CourierBackend

        return CourierBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Backend", "Outcome", "CourierBackend", "Message", "OutboxBackend", "backend_for", "courier_body"]
