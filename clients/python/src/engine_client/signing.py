"""The three ways the engine's ingest hook accepts a caller; each turns a body into headers.

- `Bearer(token)`: `Authorization: Bearer <ENGINE_INGEST_TOKEN>`.
- `Hmac(secret)`: `X-Engine-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with
  ENGINE_INGEST_SECRET.
- `StandardWebhooks(secret)`: the Standard Webhooks scheme with ENGINE_INGEST_SECRET (a
  `whsec_<base64>` secret, or any other text as its UTF-8 bytes);
  `webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`.

A signer is called once per attempt with a fresh timestamp; `message_id` is the same for every
attempt of one request, so a receiver can recognise a retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Protocol


class Signer(Protocol):
    def headers(self, body: bytes, message_id: str, timestamp: int) -> dict[str, str]:
        """The headers that authenticate `body`, sent at `timestamp` (unix seconds)."""
        ...


class Bearer:
    def __init__(self, token: str):
        if not token or not token.isascii() or any(c in token for c in "\r\n"):
            raise ValueError("a bearer token must be non-empty ASCII text on one line")
        self._token = token

    def headers(self, body: bytes, message_id: str, timestamp: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def __repr__(self) -> str:  # never the token itself
        return "Bearer(***)"


def sign_ingest(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Engine-Signature` value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Hmac:
    def __init__(self, secret: str):
        if not secret:
            raise ValueError("an HMAC secret must not be empty")
        self._secret = secret

    def headers(self, body: bytes, message_id: str, timestamp: int) -> dict[str, str]:
        return {"X-Engine-Signature": sign_ingest(self._secret, body, timestamp)}

    def __repr__(self) -> str:
        return "Hmac(***)"


SECRET_PREFIX = "whsec_"


def webhook_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: the bytes a `whsec_<base64>` secret encodes, or the UTF-8 bytes of
    any other (so the engine's ENGINE_INGEST_SECRET serves both of its schemes, as it does there)."""
    if isinstance(secret, bytes):
        key = secret
    elif secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX):]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be followed by base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("a Standard Webhooks secret must not be empty")
    return key


def sign_webhook(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class StandardWebhooks:
    def __init__(self, secret: str | bytes):
        self._key = webhook_key(secret)

    def headers(self, body: bytes, message_id: str, timestamp: int) -> dict[str, str]:
        return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_webhook(self._key, message_id, timestamp, body)}

    def __repr__(self) -> str:
        return "StandardWebhooks(***)"
