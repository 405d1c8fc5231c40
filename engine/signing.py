"""HMAC signatures: the ingest hook's (its own scheme and Standard Webhooks), Courier's webhooks',
and signed unsubscribe tokens.

Every comparison is constant-time; every signature carries a timestamp that must be recent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class SignatureError(Exception):
    """A signature is missing, malformed, stale or wrong; the message is safe to show."""


def _parts(header: str, names: tuple[str, str]) -> tuple[str, list[str]]:
    stamp, sigs = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == names[0]:
            stamp = value
        elif key == names[1]:
            sigs.append(value)
    if not stamp or not sigs:
        raise SignatureError("malformed signature header")
    return stamp, sigs


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_ingest(secret: str, body: bytes, t: int) -> str:
    return f"t={t},v1={_hex(secret, str(t).encode() + b'.' + body)}"


def _verify(secret: str, header: str | None, body: bytes, now: datetime, tolerance_s: int,
            names: tuple[str, str], per_second: int, missing: str) -> int:
    """Check `t=<stamp>,<name>=<hex HMAC-SHA256 of "<t>.<body>">`; returns the stamp."""
    if not header:
        raise SignatureError(missing)
    stamp, sigs = _parts(header, names)
    if not stamp.isdigit() or len(stamp) > 15:
        raise SignatureError("malformed signature timestamp")
    if abs(now.timestamp() * per_second - int(stamp)) > tolerance_s * per_second:
        raise SignatureError("signature timestamp outside the tolerance")
    expected = _hex(secret, stamp.encode() + b"." + body).encode()
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a header may carry anything.
    if not any(hmac.compare_digest(expected, s.encode("utf-8", "surrogatepass")) for s in sigs):
        raise SignatureError("signature does not match")
    return int(stamp)


def verify_ingest(secret: str, header: str | None, body: bytes, now: datetime, tolerance_s: int) -> int:
    """`X-Engine-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; returns t."""
    return _verify(secret, header, body, now, tolerance_s, ("t", "v1"), 1, "missing signature")


def sign_courier(secret: str, body: bytes, t_ms: int) -> str:
    return f"t={t_ms},signature={_hex(secret, str(t_ms).encode() + b'.' + body)}"


def verify_courier(secret: str, header: str | None, body: bytes, now: datetime, tolerance_s: int) -> int:
    """`courier-signature: t=<epoch ms>,signature=<hex HMAC-SHA256 of "<t>.<body>">`; returns t."""
    return _verify(secret, header, body, now, tolerance_s, ("t", "signature"), 1000, "missing courier-signature")


WEBHOOK_SECRET_PREFIX = "whsec_"
MAX_WEBHOOK_ID = 200


def webhook_key(secret: str) -> bytes:
    """The HMAC key Standard Webhooks signs with: the bytes a `whsec_<base64>` secret encodes, or
    the UTF-8 bytes of any other secret (the key `X-Engine-Signature` uses); ValueError for a
    `whsec_` secret whose rest is not base64."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(WEBHOOK_SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise ValueError("a whsec_ secret must be followed by base64") from None
    if not key:
        raise ValueError("a whsec_ secret must not be empty")
    return key


@dataclass(frozen=True)
class WebhookHeaders:
    """A request's Standard Webhooks headers, as sent (any of them may be missing)."""

    id: str | None
    timestamp: str | None
    signature: str | None

    @property
    def present(self) -> bool:
        return any(value is not None for value in (self.id, self.timestamp, self.signature))


def sign_webhook(key: bytes, msg_id: str, t: int | str, body: bytes) -> str:
    """The `webhook-signature` value for a body: `v1,<base64 HMAC-SHA256 of "<id>.<t>.<body>">`."""
    digest = hmac.new(key, f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(key: bytes, headers: WebhookHeaders, body: bytes, now: datetime, tolerance_s: int) -> str:
    """Standard Webhooks (`webhook-id`, `webhook-timestamp` in unix seconds, `webhook-signature`: one
    or more space-separated `v1,<base64>`); returns the message id, which is what replays are keyed on."""
    if not headers.id or not headers.timestamp or not headers.signature:
        raise SignatureError("Standard Webhooks needs webhook-id, webhook-timestamp and webhook-signature")
    _check_webhook_id_and_time(headers.id, headers.timestamp, now, tolerance_s)
    expected = sign_webhook(key, headers.id, headers.timestamp, body).encode()  # the timestamp as sent
    if not _offers(headers.signature, expected):
        raise SignatureError("webhook-signature does not match")
    return headers.id


def _check_webhook_id_and_time(msg_id: str, stamp: str, now: datetime, tolerance_s: int) -> None:
    if len(msg_id) > MAX_WEBHOOK_ID or not msg_id.isascii() or not msg_id.isprintable():
        raise SignatureError(f"webhook-id must be printable ASCII of at most {MAX_WEBHOOK_ID} characters")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 15:
        raise SignatureError("malformed webhook-timestamp (unix seconds)")
    if abs(now.timestamp() - int(stamp)) > tolerance_s:
        raise SignatureError("webhook-timestamp outside the tolerance")


def _offers(signatures: str, expected: bytes) -> bool:
    """Whether one of the space-separated `v1,<base64>` signatures is `expected`."""
    # Versions other than v1 (such as v1a, asymmetric) are skipped, as the specification asks.
    offered = [s.encode("utf-8", "surrogatepass") for s in signatures.split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in offered)


@dataclass(frozen=True)
class UnsubscribeToken:
    recipient_id: str
    scope: str  # a notification id, or "category:<name>"
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Links are signed when a send is scheduled, which may be months before it goes out: a year, then.
LINK_VALIDITY = timedelta(days=365)


def make_unsubscribe_token(secret: str, recipient_id: str, scope: str, now: datetime,
                           valid: timedelta = LINK_VALIDITY) -> str:
    fields = {"r": recipient_id, "s": scope, "e": int((now + valid).timestamp())}
    payload = json.dumps(fields, separators=(",", ":")).encode()
    body = _b64(payload)
    return f"{body}.{_hex('unsubscribe:' + secret, body.encode())}"


def read_unsubscribe_token(secret: str, token: str, now: datetime) -> UnsubscribeToken:
    body, _, sig = (token or "").partition(".")
    if not body or not sig:
        raise SignatureError("malformed unsubscribe token")
    expected = _hex("unsubscribe:" + secret, body.encode("utf-8", "surrogatepass")).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "surrogatepass")):
        raise SignatureError("unsubscribe token is not valid")
    found = _unsubscribe_payload(body)
    if found.expires < now:
        raise SignatureError("unsubscribe link has expired")
    return found


def _unsubscribe_payload(body: str) -> UnsubscribeToken:
    """What a token's signed body says: recipient, scope and expiry."""
    try:
        payload = json.loads(_unb64(body))
        expires = datetime.fromtimestamp(int(payload["e"]), UTC)
        return UnsubscribeToken(str(payload["r"]), str(payload["s"]), expires)
    except (ValueError, KeyError, TypeError):
        raise SignatureError("malformed unsubscribe token") from None
