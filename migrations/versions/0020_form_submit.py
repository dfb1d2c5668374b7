"""form_submit: submit keys of the console's create forms (a double submit saves once)

Revision ID: 0020_form_submit
Revises: 0019_channels
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_form_submit"
down_revision = "0019_channels"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "form_submit",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("result_url", sa.String(length=512), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_form_submit")),
    )
    op.create_index(op.f("ix_form_submit_claimed_at"), "form_submit", ["claimed_at"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_form_submit_claimed_at"), table_name="form_submit")
    op.drop_table("form_submit")
