"""Runtime settings, read from an environment mapping (tests pass a dict, never patch os.environ)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class SettingsError(Exception):
    """A setting has a value the engine cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    config_path: str = "notifications.yaml"
    database_url: str = "sqlite:///engine-data/engine.db"
    queue_url: str = "sqlite:///engine-data/queue.db"
    env: str = "production"
    courier_token: str | None = None
    courier_base_url: str | None = None
    courier_timeout: float = 10.0
    ingest_token: str | None = None
    ingest_secret: str | None = None
    webhook_secret: str | None = None
    secret_key: str | None = None
    encryption_keys: tuple[str, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1_048_576
    signature_tolerance_s: int = 300
    sweep_interval_s: float = 0.2
    max_attempts: int = 8
    workers: int = 4
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object per line (engine/logs.py)
    metrics_refresh_s: float = 15.0  # how often the store's figures on /metrics are read again
    # COURIER_<KEY>_TEMPLATE: a Courier template id over templates_map's entry for KEY, read once at start
    template_overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ

        def number(name: str, default: float, kind: Callable[[str], float] = float) -> float:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise SettingsError(f"{name}={raw!r} must be positive")
            return value

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            raw = env.get(name) or default
            for value in allowed:  # any case: ENGINE_LOG_LEVEL=debug is DEBUG
                if raw.strip().lower() == value.lower():
                    return value
            raise SettingsError(f"{name}={raw!r} is not one of {', '.join(allowed)}")

        keys = encryption_keys(env.get("ENGINE_ENCRYPTION_KEY", ""))
        settings = cls(
            config_path=env.get("ENGINE_CONFIG", cls.config_path),
            database_url=env.get("ENGINE_DATABASE_URL") or cls.database_url,
            queue_url=env.get("ENGINE_QUEUE_URL") or cls.queue_url,
            env=env.get("ENGINE_ENV") or cls.env,
            courier_token=env.get("COURIER_AUTH_TOKEN") or env.get("COURIER_API_KEY") or None,
            courier_base_url=env.get("COURIER_BASE_URL") or None,
            courier_timeout=number("COURIER_TIMEOUT", cls.courier_timeout),
            ingest_token=env.get("ENGINE_INGEST_TOKEN") or None,
            ingest_secret=env.get("ENGINE_INGEST_SECRET") or None,
            webhook_secret=env.get("COURIER_WEBHOOK_SECRET") or None,
            secret_key=env.get("ENGINE_SECRET_KEY") or None,
            encryption_keys=keys,
            public_url=(env.get("ENGINE_PUBLIC_URL") or cls.public_url).rstrip("/"),
            max_body_bytes=int(number("ENGINE_MAX_BODY_BYTES", cls.max_body_bytes, int)),
            sweep_interval_s=number("ENGINE_SWEEP_INTERVAL", cls.sweep_interval_s),
            max_attempts=int(number("ENGINE_MAX_ATTEMPTS", cls.max_attempts, int)),
            workers=int(number("ENGINE_WORKERS", cls.workers, int)),
            log_level=choice("ENGINE_LOG_LEVEL", cls.log_level, LOG_LEVELS),
            log_format=choice("ENGINE_LOG_FORMAT", cls.log_format, LOG_FORMATS),
            metrics_refresh_s=number("ENGINE_METRICS_REFRESH", cls.metrics_refresh_s),
            template_overrides=template_overrides(env),
        )
        return replace(settings, **overrides) if overrides else settings


def encryption_keys(raw: str) -> tuple[str, ...]:
    """ENGINE_ENCRYPTION_KEY's comma-separated Fernet keys, each checked."""
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if keys:
        from cryptography.fernet import Fernet

        for key in keys:
            try:
                Fernet(key.encode())
            except ValueError:
                raise SettingsError("ENGINE_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes "
                                    "(make one with: python -c 'from cryptography.fernet import Fernet; "
                                    "print(Fernet.generate_key().decode())')") from None
    return keys


def template_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The COURIER_<KEY>_TEMPLATE variables that are set, by name (`Config.template_id` reads them)."""
    return {k: v for k, v in environ.items() if k.startswith("COURIER_") and k.endswith("_TEMPLATE") and v}
