"""The outbox: without a Courier token, sends are recorded (in the database row and the log)."""

from __future__ import annotations

import hashlib
import logging

from .base import Outcome
from .message import Message

log = logging.getLogger("engine.delivery")


class OutboxBackend:
    name = "outbox"

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        request_id = "outbox-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        # The send's outcome line (INFO) names the notification, template and request id; this one the
        # template and the request id, never the address or the data.
        log.debug("outbox: %s recorded as %s", message.template, request_id)
        return Outcome("sent", request_id=request_id)
