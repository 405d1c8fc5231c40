"""Settings come from an environment mapping; errors name the variable."""

from __future__ import annotations

import pytest

from engine.delivery import CourierBackend, OutboxBackend, backend_for
from engine.runtime import Runtime
from engine.settings import Settings, SettingsError
from engine.store.codec import Codec

from .conftest import ROOT

NEW_KEY, OLD_KEY = "3Jq0m0yNbQyq2X9Jm3c6bJp1QwF0yJt6kX3xg1Jb2Ck=", "x1R6g4Jd3e6hN1zPzq0rB8sQ2W5vY7uT9iO3pL4kM6c="


def test_settings_read_the_documented_variables() -> None:
    s = Settings.from_environ(
        {
            "ENGINE_DATABASE_URL": "postgresql+psycopg://db/x",
            "ENGINE_QUEUE_URL": "redis://q:6379/1",
            "ENGINE_ENV": "staging",
            "COURIER_API_KEY": "sdk-name",
            "COURIER_BASE_URL": "http://courier.local",
            "ENGINE_INGEST_TOKEN": "t",
            "ENGINE_INGEST_SECRET": "s",
            "COURIER_WEBHOOK_SECRET": "w",
            "ENGINE_SECRET_KEY": "k",
            "ENGINE_ENCRYPTION_KEY": f" {NEW_KEY} , {OLD_KEY} ,",
            "ENGINE_PUBLIC_URL": "https://e.example.com/",
        }
    )
    assert (s.database_url, s.queue_url, s.env) == ("postgresql+psycopg://db/x", "redis://q:6379/1", "staging")
    assert (s.courier_token, s.courier_base_url) == ("sdk-name", "http://courier.local")
    assert (s.ingest_token, s.ingest_secret, s.webhook_secret, s.secret_key) == ("t", "s", "w", "k")
    assert s.encryption_keys == (NEW_KEY, OLD_KEY) and s.public_url == "https://e.example.com"
    assert Settings.from_environ({"COURIER_AUTH_TOKEN": "seed", "COURIER_API_KEY": "sdk"}).courier_token == "seed"
    defaults = Settings.from_environ({})
    assert defaults.database_url.startswith("sqlite:///") and defaults.queue_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    "name, value", [("COURIER_TIMEOUT", "soon"), ("ENGINE_MAX_ATTEMPTS", "0"), ("ENGINE_WORKERS", "1.5")]
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({name: value})


def test_the_backend_follows_the_token() -> None:
    assert isinstance(backend_for(Settings()), OutboxBackend)
    assert isinstance(backend_for(Settings(courier_token="x", courier_base_url="http://127.0.0.1:9")), CourierBackend)


def test_bad_keys_and_environments_are_refused_with_a_clear_message(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="ENGINE_ENCRYPTION_KEY"):
        Codec(("not-a-fernet-key",))
    with pytest.raises(SettingsError, match="ENGINE_ENCRYPTION_KEY: each key must be 32"):
        Settings.from_environ({"ENGINE_ENCRYPTION_KEY": f"{NEW_KEY},not-a-fernet-key"})
    with pytest.raises(SettingsError, match="ENGINE_ENV='nowhere': there is no templates_map/nowhere.yaml"):
        Runtime.create(
            Settings(config_path=str(ROOT / "notifications.yaml"), database_url=sqlite_url, env="nowhere"), {}
        )


def test_template_overrides_are_read_once_with_the_settings() -> None:
    s = Settings.from_environ({"COURIER_CLIENT_WELCOME_TEMPLATE": "WELCOME_V9", "COURIER_EMPTY_TEMPLATE": "",
                               "COURIER_AUTH_TOKEN": "t", "PATH": "/usr/bin"})
    assert s.template_overrides == {"COURIER_CLIENT_WELCOME_TEMPLATE": "WELCOME_V9"}
