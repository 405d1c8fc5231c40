"""Who may call the hook: a bearer token, an `X-Engine-Signature` HMAC or Standard Webhooks
signature (engine/signing.py), Courier's `courier-signature`, or, while no credential is set,
any caller on this machine (loopback). Nothing here reads the store: replays are engine/http/replays.py.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from starlette.requests import Request

from ..clock import utcnow
from ..settings import Settings, SettingsError
from ..signing import SignatureError, WebhookHeaders, verify_courier, verify_ingest, verify_webhook, webhook_key
from .answers import Refused
from .replays import Signed

MISSING = "missing or invalid credentials"


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("testclient", "localhost")


def bearer_ok(request: Request, token: str | None) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (compared in constant time)."""
    header = request.headers.get("authorization", "")
    if not token or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


@dataclass(frozen=True)
class Auth:
    """The hook's credentials, read once from the settings."""

    token: str | None
    secret: str | None
    webhook_secret: str | None
    signing_key: bytes  # the Standard Webhooks key of `secret`
    tolerance_s: int

    @classmethod
    def of(cls, settings: Settings) -> Auth:
        """SettingsError when ENGINE_INGEST_SECRET cannot be a Standard Webhooks key."""
        try:
            key = webhook_key(settings.ingest_secret) if settings.ingest_secret else b""
        except ValueError as exc:
            raise SettingsError(f"ENGINE_INGEST_SECRET: {exc}") from None
        return cls(settings.ingest_token, settings.ingest_secret, settings.webhook_secret, key,
                   settings.signature_tolerance_s)

    @property
    def open_hook(self) -> bool:
        """No credential is set: callers on this machine may ingest and read."""
        return not self.token and not self.secret

    def ingest(self, request: Request, body: bytes) -> Signed | None:
        """Whether the caller may post events: Refused (401) says why not; a signed request
        comes back as what it is recorded under, to answer its copies (`Replays`)."""
        if bearer_ok(request, self.token):
            return None
        try:
            signed = self._signed(request, body)
        except SignatureError as exc:
            raise Refused(401, str(exc)) from None
        if signed is not None or (self.open_hook and is_loopback(request)):
            return signed
        raise Refused(401, MISSING)

    def _signed(self, request: Request, body: bytes) -> Signed | None:
        if not self.secret:
            return None
        signature = request.headers.get("x-engine-signature")
        if signature:
            stamp = verify_ingest(self.secret, signature, body, utcnow(), self.tolerance_s)
            return Signed.ingest(stamp, body)
        webhook = WebhookHeaders(request.headers.get("webhook-id"), request.headers.get("webhook-timestamp"),
                                 request.headers.get("webhook-signature"))
        if webhook.present:
            return Signed.webhook(verify_webhook(self.signing_key, webhook, body, utcnow(), self.tolerance_s), body)
        return None

    def admin(self, request: Request) -> None:
        """Whether the caller may read and change preferences and sends; Refused (401) if not."""
        allowed = bearer_ok(request, self.token) if self.token else (not self.secret and is_loopback(request))
        if not allowed:
            raise Refused(401, MISSING)

    def courier(self, request: Request, body: bytes) -> int:
        """The timestamp of a verified Courier webhook; Refused (401) without a valid signature."""
        if not self.webhook_secret:
            raise Refused(401, "webhooks are refused: COURIER_WEBHOOK_SECRET is not set")
        try:
            return verify_courier(self.webhook_secret, request.headers.get("courier-signature"), body, utcnow(),
                                  self.tolerance_s)
        except SignatureError as exc:
            raise Refused(401, str(exc)) from None
