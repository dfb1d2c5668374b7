"""publish_orphan: unattributed publish results kept in PostgreSQL (they were in a Redis hash)

Revision ID: 0016_publish_orphan
Revises: 0015_session_cancel
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_publish_orphan"
down_revision = "0015_session_cancel"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "publish_orphan",
        sa.Column("publish_id", sa.String(length=64), nullable=False),
        sa.Column("article_id", sa.String(length=128), nullable=False),
        sa.Column("urls", sa.JSON(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("publish_id", name=op.f("pk_publish_orphan")),
    )


def downgrade():
    op.drop_table("publish_orphan")
