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
        settings = cls(**_secrets(env), **_places(env), **_limits(env), **_observability(env),
                       template_overrides=template_overrides(env))
        return replace(settings, **overrides) if overrides else settings


def _secrets(env: Mapping[str, str]) -> dict[str, Any]:
    return {"encryption_keys": encryption_keys(env.get("ENGINE_ENCRYPTION_KEY", "")),
            "courier_token": env.get("COURIER_AUTH_TOKEN") or env.get("COURIER_API_KEY") or None,
            "ingest_token": env.get("ENGINE_INGEST_TOKEN") or None,
            "ingest_secret": env.get("ENGINE_INGEST_SECRET") or None,
            "webhook_secret": env.get("COURIER_WEBHOOK_SECRET") or None,
            "secret_key": env.get("ENGINE_SECRET_KEY") or None}


def _places(env: Mapping[str, str]) -> dict[str, Any]:
    """Where the rules, the store, the queue, Courier and the engine itself are."""
    return {"config_path": env.get("ENGINE_CONFIG", Settings.config_path),
            "database_url": env.get("ENGINE_DATABASE_URL") or Settings.database_url,
            "queue_url": env.get("ENGINE_QUEUE_URL") or Settings.queue_url,
            "env": env.get("ENGINE_ENV") or Settings.env,
            "courier_base_url": env.get("COURIER_BASE_URL") or None,
            "public_url": (env.get("ENGINE_PUBLIC_URL") or Settings.public_url).rstrip("/")}


def _limits(env: Mapping[str, str]) -> dict[str, Any]:
    return {"courier_timeout": _number(env, "COURIER_TIMEOUT", Settings.courier_timeout),
            "max_body_bytes": int(_number(env, "ENGINE_MAX_BODY_BYTES", Settings.max_body_bytes, int)),
            "sweep_interval_s": _number(env, "ENGINE_SWEEP_INTERVAL", Settings.sweep_interval_s),
            "max_attempts": int(_number(env, "ENGINE_MAX_ATTEMPTS", Settings.max_attempts, int)),
            "workers": int(_number(env, "ENGINE_WORKERS", Settings.workers, int))}


def _observability(env: Mapping[str, str]) -> dict[str, Any]:
    return {"log_level": _choice(env, "ENGINE_LOG_LEVEL", Settings.log_level, LOG_LEVELS),
            "log_format": _choice(env, "ENGINE_LOG_FORMAT", Settings.log_format, LOG_FORMATS),
            "metrics_refresh_s": _number(env, "ENGINE_METRICS_REFRESH", Settings.metrics_refresh_s)}


def _number(env: Mapping[str, str], name: str, default: float, kind: Callable[[str], float] = float) -> float:
    """A positive number; unset or empty is the default."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    value = _parsed(name, raw, kind)
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _parsed(name: str, raw: str, kind: Callable[[str], float]) -> float:
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    for value in allowed:  # any case: ENGINE_LOG_LEVEL=debug is DEBUG
        if raw.strip().lower() == value.lower():
            return value
    raise SettingsError(f"{name}={raw!r} is not one of {', '.join(allowed)}")


def encryption_keys(raw: str) -> tuple[str, ...]:
    """ENGINE_ENCRYPTION_KEY's comma-separated Fernet keys, each checked."""
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for key in keys:
        _check_fernet_key(key)
    return keys


def _check_fernet_key(key: str) -> None:
    from cryptography.fernet import Fernet

    try:
        Fernet(key.encode())
    except ValueError:
        raise SettingsError("ENGINE_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes "
                            "(make one with: python -c 'from cryptography.fernet import Fernet; "
                            "print(Fernet.generate_key().decode())')") from None


def template_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The COURIER_<KEY>_TEMPLATE variables that are set, by name (`Config.template_id` reads them)."""
    return {k: v for k, v in environ.items() if k.startswith("COURIER_") and k.endswith("_TEMPLATE") and v}
