"""early delivery receipts

A Courier status webhook may arrive before the send it reports on is committed. Courier does not
retry a 4xx answer (other than 408 and 429), so such a status is kept here and applied when the
send is recorded, or dropped after a day.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_receipts",
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "status", name=op.f("pk_early_receipts")),
    )
    op.create_index("ix_early_receipts_received_at", "early_receipts", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_early_receipts_received_at", table_name="early_receipts")
    op.drop_table("early_receipts")
