"""event_session.revision and event_notice.revision: a changed time or place is notified, and reminders go again

Revision ID: 0014_session_revision
Revises: 0013_publishing_checks
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_session_revision"
down_revision = "0013_publishing_checks"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("event_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("event_notice", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_event_notice_registration_kind", type_="unique")
        batch_op.create_unique_constraint(
            "uq_event_notice_registration_kind_revision", ["registration_id", "kind", "revision"]
        )


def downgrade():
    # The old code knows one notice per registration and kind: keep the latest of each, drop change notices.
    op.execute("DELETE FROM event_notice WHERE kind = 'CHANGED'")
    op.execute("DELETE FROM event_notice WHERE id NOT IN (SELECT max(id) FROM event_notice GROUP BY registration_id, kind)")
    with op.batch_alter_table("event_notice", schema=None) as batch_op:
        batch_op.drop_constraint("uq_event_notice_registration_kind_revision", type_="unique")
        batch_op.create_unique_constraint("uq_event_notice_registration_kind", ["registration_id", "kind"])
        batch_op.drop_column("revision")
    with op.batch_alter_table("event_session", schema=None) as batch_op:
        batch_op.drop_column("revision")
