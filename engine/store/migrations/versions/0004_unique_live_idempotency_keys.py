"""one live row per idempotency key

The engine checked an idempotency key before inserting a send, but two transactions on
PostgreSQL could both pass that check at once; Courier's own idempotency kept the second from
being sent. Now a unique index on the keys of live and sent rows (status not cancelled, skipped
or failed) refuses the second row. A database that already holds such rows keeps one of each
key (a sent row first, then one being sent, then the oldest) and records the others as skipped,
with the reason, so that the index can be built.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_ROW = "status NOT IN ('cancelled', 'skipped', 'failed')"


def upgrade() -> None:
    def rank(table: str) -> str:  # which row of a key is kept: lowest rank, then lowest id
        return f"CASE {table}.status WHEN 'sent' THEN 0 WHEN 'sending' THEN 1 ELSE 2 END"

    op.execute(
        "UPDATE notifications SET status = 'skipped', "
        "reason = 'a duplicate of another send with the same idempotency key' "
        f"WHERE {LIVE_ROW} AND EXISTS (SELECT 1 FROM notifications kept "
        "WHERE kept.idempotency_key = notifications.idempotency_key AND kept.id <> notifications.id "
        f"AND kept.{LIVE_ROW} AND ({rank('kept')} < {rank('notifications')} "
        f"OR ({rank('kept')} = {rank('notifications')} AND kept.id < notifications.id)))"
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_idempotency')
        batch_op.create_index('ix_notifications_live_idempotency', ['idempotency_key'], unique=True,
                              sqlite_where=sa.text(LIVE_ROW), postgresql_where=sa.text(LIVE_ROW))


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_live_idempotency')
        batch_op.create_index('ix_notifications_idempotency', ['idempotency_key'], unique=False)
