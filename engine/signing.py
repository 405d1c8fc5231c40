"""HMAC signatures: the ingest hook's, Courier's webhooks', and signed unsubscribe tokens.

Every comparison is constant-time; every signature carries a timestamp that must be recent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


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


def verify_ingest(secret: str, header: str | None, body: bytes, now: datetime, tolerance_s: int) -> int:
    """`X-Engine-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; returns t."""
    if not header:
        raise SignatureError("missing signature")
    stamp, sigs = _parts(header, ("t", "v1"))
    if not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError("malformed signature timestamp")
    t = int(stamp)
    if abs(now.timestamp() - t) > tolerance_s:
        raise SignatureError("signature timestamp outside the tolerance")
    expected = _hex(secret, stamp.encode() + b"." + body)
    if not any(hmac.compare_digest(expected.encode(), s.encode("utf-8", "surrogatepass")) for s in sigs):
        raise SignatureError("signature does not match")
    return t


def sign_courier(secret: str, body: bytes, t_ms: int) -> str:
    return f"t={t_ms},signature={_hex(secret, str(t_ms).encode() + b'.' + body)}"


def verify_courier(secret: str, header: str | None, body: bytes, now: datetime, tolerance_s: int) -> int:
    """`courier-signature: t=<epoch ms>,signature=<hex HMAC-SHA256 of "<t>.<body>">`."""
    if not header:
        raise SignatureError("missing courier-signature")
    stamp, sigs = _parts(header, ("t", "signature"))
    if not stamp.isdigit() or len(stamp) > 15:
        raise SignatureError("malformed signature timestamp")
    if abs(now.timestamp() * 1000 - int(stamp)) > tolerance_s * 1000:
        raise SignatureError("signature timestamp outside the tolerance")
    expected = _hex(secret, stamp.encode() + b"." + body)
    if not any(hmac.compare_digest(expected.encode(), s.encode("utf-8", "surrogatepass")) for s in sigs):
        raise SignatureError("signature does not match")
    return int(stamp)


@dataclass(frozen=True)
class UnsubscribeToken:
    recipient_id: str
    scope: str  # a notification id, or "category:<name>"
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_unsubscribe_token(secret: str, recipient_id: str, scope: str, now: datetime, valid: timedelta = timedelta(days=60)) -> str:
    payload = json.dumps({"r": recipient_id, "s": scope, "e": int((now + valid).timestamp())}, separators=(",", ":")).encode()
    body = _b64(payload)
    return f"{body}.{_hex('unsubscribe:' + secret, body.encode())}"


def read_unsubscribe_token(secret: str, token: str, now: datetime) -> UnsubscribeToken:
    body, _, sig = (token or "").partition(".")
    if not body or not sig:
        raise SignatureError("malformed unsubscribe token")
    if not hmac.compare_digest(_hex("unsubscribe:" + secret, body.encode("utf-8", "surrogatepass")).encode(), sig.encode("utf-8", "surrogatepass")):
        raise SignatureError("unsubscribe token is not valid")
    try:
        payload = json.loads(_unb64(body))
        found = UnsubscribeToken(str(payload["r"]), str(payload["s"]), datetime.fromtimestamp(int(payload["e"]), timezone.utc))
    except (ValueError, KeyError, TypeError):
        raise SignatureError("malformed unsubscribe token") from None
    if found.expires < now:
        raise SignatureError("unsubscribe link has expired")
    return found
