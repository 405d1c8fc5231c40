"""A minimal Estuary: bookings, payments and messages, and the engine's outbox.

Configured from the environment: ESTUARY_DB (the SQLite file), ENGINE_URL, and one of
ENGINE_INGEST_TOKEN, ENGINE_INGEST_SECRET, ENGINE_WEBHOOK_SECRET.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-the-example")
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "estuary.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "engine_client.django",  # the outbox: emit_on_commit and manage.py relay_events
    "bookings",
]

DATABASES = {
    # ATOMIC_REQUESTS: a view's changes and the events they queue commit together, or neither does.
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ESTUARY_DB", str(BASE_DIR / "db.sqlite3")),
        "ATOMIC_REQUESTS": True,
    },
}

ENGINE_CLIENT = {
    "URL": os.environ.get("ENGINE_URL", "http://localhost:8000"),
    "TOKEN": os.environ.get("ENGINE_INGEST_TOKEN") or None,
    "SECRET": os.environ.get("ENGINE_INGEST_SECRET") or None,
    "WEBHOOK_SECRET": os.environ.get("ENGINE_WEBHOOK_SECRET") or None,
}

FRONTEND_URL = "https://estuary.app"

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"engine_client": {"handlers": ["console"], "level": "INFO"}},
}
