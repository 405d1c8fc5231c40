"""the time a send first fell due

A retry or a pause moves a row's `send_at`; the deadline of its rule's `expires_after` counts
from `due_at`, the time it first fell due, which they never move. Rows already stored take their
`send_at` (the best this database knows of a send already put back).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE notifications SET due_at = send_at WHERE due_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("due_at")
