"""Delivery backends: one interface, Courier for real and an outbox for running without it."""

from __future__ import annotations

from ..settings import Settings
from .base import Backend, Outcome
from .courier import CourierBackend
from .message import Message, courier_body
from .outbox import OutboxBackend


def backend_for(settings: Settings) -> Backend:
    if settings.courier_token:
        return CourierBackend(settings.courier_token, settings.courier_base_url, settings.courier_timeout)
    return OutboxBackend()


__all__ = ["Backend", "Outcome", "CourierBackend", "Message", "OutboxBackend", "backend_for", "courier_body"]
