"""The relay's client, from settings.ENGINE_CLIENT:

    ENGINE_CLIENT = {
        "URL": "https://engine.internal",      # required
        "TOKEN": "...",                         # or "SECRET" (HMAC) or "WEBHOOK_SECRET" (whsec_...)
        "TIMEOUT": 10,                          # seconds per attempt
        "RETRY": {"attempts": 5, "backoff": 0.25, "max_backoff": 8.0},
    }
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..client import Client
from ..retry import Retry

_KEYS = {"URL": "url", "TOKEN": "token", "SECRET": "secret", "WEBHOOK_SECRET": "webhook_secret"}


def client() -> Client:
    conf: Any = getattr(settings, "ENGINE_CLIENT", None)
    if not isinstance(conf, dict) or not conf.get("URL"):
        raise ImproperlyConfigured(
            "settings.ENGINE_CLIENT needs a URL, such as {'URL': 'http://localhost:8000', 'TOKEN': '...'}"
        )
    unknown = set(conf) - set(_KEYS) - {"TIMEOUT", "RETRY"}
    if unknown:
        raise ImproperlyConfigured(f"settings.ENGINE_CLIENT has unknown keys: {', '.join(sorted(unknown))}")
    try:
        return Client(**{arg: conf[key] for key, arg in _KEYS.items() if conf.get(key) is not None},
                      timeout=float(conf.get("TIMEOUT", 10)), retry=Retry(**conf.get("RETRY", {})))
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.ENGINE_CLIENT: {exc}") from None
