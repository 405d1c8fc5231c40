"""history without creation entries

A notification row is now its own record of creation (`Store.history` reads it from the row);
the history table keeps the changes after it. This removes the creation entry that earlier
versions wrote for every row: the first history entry of each notification, made when the row
was (status `scheduled` or `skipped`, at the row's `created_at`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM notification_history WHERE status IN ('scheduled', 'skipped') "
        "AND id IN (SELECT min(id) FROM notification_history GROUP BY notification_id) "
        "AND EXISTS (SELECT 1 FROM notifications n WHERE n.id = notification_history.notification_id "
        "AND n.created_at = notification_history.at)"
    )


def downgrade() -> None:
    """Nothing to undo in the schema: under an earlier version, histories then start at the
    first change instead of at the creation."""
