"""material_item: a partial index on the failed photos' received_at, for the lost-photo sweep that runs every minute

Revision ID: 0023_material_failed_index
Revises: 0022_material_upload_state
"""

import sqlalchemy as sa
from alembic import op

revision = "0023_material_failed_index"
down_revision = "0022_material_upload_state"
branch_labels = None
depends_on = None

FAILED = sa.text("state = 'FAILED'")


def upgrade():
    op.create_index(
        "ix_material_item_failed_received",
        "material_item",
        ["received_at"],
        postgresql_where=FAILED,
        sqlite_where=FAILED,
    )


def downgrade():
    op.drop_index("ix_material_item_failed_received", table_name="material_item")
