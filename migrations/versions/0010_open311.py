"""open311: API keys of partner systems filing tips through Open311 GeoReport v2

Revision ID: 0010_open311
Revises: 0003_tips
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_open311"
down_revision = "0003_tips"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "open311_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.String(length=100), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["staff.id"], name=op.f("fk_open311_key_created_by_id_staff"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_open311_key_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_open311_key_name")),
    )


def downgrade():
    op.drop_table("open311_key")
