"""material_item.scene_id: which of an officer's chat photos a caption or place was sent for

Revision ID: 0021_material_scene
Revises: 0020_form_submit
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_material_scene"
down_revision = "0020_form_submit"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("material_item") as batch:
        batch.add_column(sa.Column("scene_id", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("material_item") as batch:
        batch.drop_column("scene_id")
