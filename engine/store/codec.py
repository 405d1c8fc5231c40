"""How stored payloads are written: JSON, encrypted with Fernet when ENGINE_ENCRYPTION_KEY is set.

Several comma-separated keys rotate: the first encrypts, all decrypt (MultiFernet), so a new key
can be put in front while old rows stay readable.
"""

from __future__ import annotations

from typing import Any

from ..jsontext import from_json, to_json

PREFIX = "fernet:"


class Codec:
    def __init__(self, keys: tuple[str, ...] = ()):
        self._fernet = None
        if keys:
            from cryptography.fernet import Fernet, MultiFernet

            try:
                self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
            except ValueError:
                raise ValueError("ENGINE_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes "
                                 "(make one with: python -c 'from cryptography.fernet import Fernet; "
                                 "print(Fernet.generate_key().decode())')") from None

    def dumps(self, value: Any) -> str:
        data = to_json(value)
        if self._fernet is None:
            return data.decode()
        return PREFIX + self._fernet.encrypt(data).decode()

    def loads(self, stored: str | None) -> Any:
        if stored is None:
            return None
        if stored.startswith(PREFIX):
            if self._fernet is None:
                raise ValueError("a stored payload is encrypted but ENGINE_ENCRYPTION_KEY is not set")
            return from_json(self._fernet.decrypt(stored[len(PREFIX):].encode()))
        return from_json(stored)

    def rotate(self, stored: str) -> str:
        """Re-encrypt with the first key (after a new key was put in front)."""
        if self._fernet is None or not stored.startswith(PREFIX):
            return stored
        return PREFIX + self._fernet.rotate(stored[len(PREFIX):].encode()).decode()
