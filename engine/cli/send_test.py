"""`engine send-test`: send one notification now, with the rule's example data."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

import click

from .common import config_option, runtime

if TYPE_CHECKING:
    from ..runtime import Runtime


@click.command("send-test")
@click.option("--type", "notification", required=True, help="The notification id, e.g. client_welcome.")
@click.option("--user-id", default=None, help="A known recipient (from events or `engine recipients import`).")
@click.option("--to", "email", default=None, help="An email address to send to.")
@click.option("--data", "data_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="JSON event data instead of the example's.")
@config_option
def command(notification: str, user_id: str | None, email: str | None, data_path: str | None,
            config_path: str | None) -> None:
    """Send one notification now to a user or an address."""
    if bool(user_id) == bool(email):
        raise click.UsageError("give exactly one of --user-id or --to")
    rt = runtime(config_path)
    if notification not in rt.config.notifications:
        raise click.BadParameter(f"unknown notification {notification!r}", param_hint="--type")
    data = _read_data(data_path) if data_path else None
    recipient = _addressee(rt, email) if email else str(user_id)
    # A test send goes out each time it is asked for: its own idempotency key, not the rule's.
    key = f"send-test:{notification}:{uuid.uuid4().hex}"
    status = rt.send_now(notification, recipient, data, idempotency_key=key, example=data is None)
    click.echo(f"{notification}: {status} (via {rt.backend.name})")
    if status not in ("sent",):
        raise click.exceptions.Exit(1)


def _read_data(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{path}: not JSON: {exc.msg}") from None


def _addressee(rt: Runtime, email: str) -> dict[str, Any]:
    """The known recipient with this address, else one made for the test send."""
    # The id is stored in clear (it keys rows and logs): never the address itself.
    test_id = "test:" + hashlib.sha256(email.lower().encode()).hexdigest()[:16]
    return rt.store.recipient_by_email(email) or {"id": test_id, "email": email, "name": email.split("@")[0]}
