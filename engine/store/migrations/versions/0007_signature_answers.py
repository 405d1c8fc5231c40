"""the answer a signed request got

A signed request retried with the same signature (or the same Standard Webhooks id) gets the
answer its first copy got; the receipt keeps which request it was (a digest of its body) and
that answer.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signature_receipts") as batch:
        batch.add_column(sa.Column("request", sa.String(64), nullable=True))
        batch.add_column(sa.Column("answer", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signature_receipts") as batch:
        batch.drop_column("answer")
        batch.drop_column("request")
