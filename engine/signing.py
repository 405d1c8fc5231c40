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


def make_unsubscribe_token(secret: str, recipient_id: str, scope: str, now: datetime, valid: timedelta = LINK_VALIDITY) -> str:
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
