"""alert_notice: attempts and next_attempt_at, so failed notices are claimed, retried with backoff and given up

Revision ID: 0017_alert_notice_retry
Revises: 0016_publish_orphan
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_alert_notice_retry"
down_revision = "0016_publish_orphan"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("alert_notice") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("alert_notice") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
