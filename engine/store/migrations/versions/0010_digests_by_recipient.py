"""digests found by their recipient and notification

A batch's item looks for its batch still collecting among the recipient's digests of that
notification. By key range alone PostgreSQL could only scan every digest collecting (its primary
key is not in the "C" collation the range is compared in); this index finds a recipient's few.
It also serves erasing a recipient's digests.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_digests_recipient", "digests", ["recipient_id", "notification"])


def downgrade() -> None:
    op.drop_index("ix_digests_recipient", table_name="digests")
