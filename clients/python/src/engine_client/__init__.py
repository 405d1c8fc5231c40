"""Post events to the notification engine.

    from engine_client import Client
    client = Client("http://localhost:8000", token="...")
    client.emit({"type": "user.registered", "data": {...}})
"""

from .client import AsyncClient, Client, Receipt
from .errors import (
                     BadRequest,
                     EngineError,
                     EngineRefused,
                     EngineUnavailable,
                     EventRefused,
                     PayloadTooLarge,
                     Problem,
                     Unauthorized,
)
from .events import EventEncoder, envelope
from .ids import new_event_id
from .retry import NO_RETRY, Retry
from .signing import Bearer, Hmac, Signer, StandardWebhooks, sign_ingest, sign_webhook

__all__ = [
                     "NO_RETRY",
                     "AsyncClient",
                     "BadRequest",
                     "Bearer",
                     "Client",
                     "EngineError",
                     "EngineRefused",
                     "EngineUnavailable",
                     "EventEncoder",
                     "EventRefused",
                     "Hmac",
                     "PayloadTooLarge",
                     "Problem",
                     "Receipt",
                     "Retry",
                     "Signer",
                     "StandardWebhooks",
                     "Unauthorized",
                     "envelope",
                     "new_event_id",
                     "sign_ingest",
                     "sign_webhook",
]
__version__ = "0.1.0"
