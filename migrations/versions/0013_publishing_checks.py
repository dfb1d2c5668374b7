"""publishing: uncertain submits, failure notices to duty editors, first submission time of articles

Revision ID: 0013_publishing_checks
Revises: 0012_event_notice_retry
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_publishing_checks"
down_revision = "0012_event_notice_retry"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade():
    with op.batch_alter_table("article_push") as batch:
        batch.add_column(sa.Column("failure_no", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("notified_no", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("article") as batch:
        batch.add_column(sa.Column("submitted_at", TZ, nullable=True))
    # Articles submitted before this column existed: their first submission is in the audit log.
    op.execute(
        """
        UPDATE article SET submitted_at = (
            SELECT min(audit_log.at) FROM audit_log
            WHERE audit_log.action = 'article.submit' AND audit_log.target_type = 'article'
              AND audit_log.target_id = CAST(article.id AS VARCHAR(64))
        )
        """
    )
    op.create_table(
        "push_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("push_id", sa.Integer(), nullable=False),
        sa.Column("failure_no", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["push_id"], ["article_push.id"], name=op.f("fk_push_notice_push_id_article_push"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_push_notice_staff_id_staff"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_notice")),
        sa.UniqueConstraint("push_id", "failure_no", "staff_id", name="uq_push_notice_once"),
    )
    op.create_index(op.f("ix_push_notice_push_id"), "push_notice", ["push_id"])


def downgrade():
    op.drop_index(op.f("ix_push_notice_push_id"), table_name="push_notice")
    op.drop_table("push_notice")
    # Pushes and articles waiting for a person's check go back to what the older code knew: failed.
    op.execute("UPDATE article_push SET status = 'FAILED' WHERE status = 'UNCERTAIN'")
    op.execute("UPDATE article SET status = 'FAILED' WHERE status = 'UNCERTAIN'")
    with op.batch_alter_table("article") as batch:
        batch.drop_column("submitted_at")
    with op.batch_alter_table("article_push") as batch:
        batch.drop_column("notified_no")
        batch.drop_column("failure_no")
