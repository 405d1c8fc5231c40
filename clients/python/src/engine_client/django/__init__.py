"""The outbox for Django: events written in your transaction, relayed to the engine after it commits.

Add "engine_client.django" to INSTALLED_APPS, set ENGINE_CLIENT (see `settings.client`), run
`manage.py migrate`, call `emit_on_commit(event)` where you used to send a notification, and run
`manage.py relay_events`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outbox import emit_on_commit as emit_on_commit


def __getattr__(name: str) -> Any:
    # Importing models before the app registry is ready fails: the import waits for first use.
    if name == "emit_on_commit":
        from .outbox import emit_on_commit

        return emit_on_commit
    raise AttributeError(name)
