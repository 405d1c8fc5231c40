"""The reliability suite uses the runtime suite's service fixtures (PostgreSQL, Redis)."""

from tests.runtime.conftest import pg_url, redis_url  # noqa: F401  (fixtures)
