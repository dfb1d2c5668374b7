"""event_session.cancelled_at and cancel_reason: the bureau calls a session off (weather, an emergency)

Revision ID: 0015_session_cancel
Revises: 0014_session_revision
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_session_cancel"
down_revision = "0014_session_revision"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("event_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancel_reason", sa.String(length=100), server_default="", nullable=False))


def downgrade():
    # The old code has no notice kind for a called-off session: drop those notices with the columns.
    op.execute("DELETE FROM event_notice WHERE kind = 'CALLED_OFF'")
    with op.batch_alter_table("event_session", schema=None) as batch_op:
        batch_op.drop_column("cancel_reason")
        batch_op.drop_column("cancelled_at")
