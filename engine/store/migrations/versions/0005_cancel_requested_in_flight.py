"""a cancel that reaches a send in flight

A cancel ends the pending rows of its key at once. A row being sent cannot be ended then (Courier
may accept it a moment later), so the cancel is written on it as `cancel_reason`: if that attempt
does not go through, the row ends cancelled instead of being armed for a retry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("cancel_reason", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("cancel_reason")
