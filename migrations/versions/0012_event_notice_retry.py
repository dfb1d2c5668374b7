"""event_notice: an outbox with retries (pending state, attempts, next attempt, claim time, link)

Revision ID: 0012_event_notice_retry
Revises: 0011_merge
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_event_notice_retry"
down_revision = "0011_merge"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("event_notice", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("url", sa.String(length=512), nullable=True))
        batch_op.create_index("ix_event_notice_state_next", ["state", "next_attempt_at"], unique=False)
    # Every row from before had its one attempt (a failure was final then).
    op.execute("UPDATE event_notice SET attempts = 1")


def downgrade():
    # The old code knows no PENDING: what still waits for a retry becomes a failure, as it was then.
    op.execute("UPDATE event_notice SET state = 'FAILED' WHERE state = 'PENDING'")
    with op.batch_alter_table("event_notice", schema=None) as batch_op:
        batch_op.drop_index("ix_event_notice_state_next")
        batch_op.drop_column("url")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
