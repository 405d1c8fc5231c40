"""unsubscribes counted per notification and time

Each unsubscribe that turned something off is a row: its scope (a notification id, or
`category:<name>`) and when. No recipient: the count is statistics, not personal data.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unsubscribes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_unsubscribes_at", "unsubscribes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_unsubscribes_at", table_name="unsubscribes")
    op.drop_table("unsubscribes")
