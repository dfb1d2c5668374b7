"""material_rendition: the state of its upload to WeChat (queued, uploading, uploaded, failed) and why it failed

Revision ID: 0022_material_upload_state
Revises: 0021_material_scene
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_material_upload_state"
down_revision = "0021_material_scene"
branch_labels = None
depends_on = None


def upgrade():
    # No backfill: a rendition whose bytes are on WeChat already reads as uploaded from wechat_image.
    state = sa.Enum("QUEUED", "UPLOADING", "UPLOADED", "FAILED", name="uploadstate", native_enum=False, length=16)
    with op.batch_alter_table("material_rendition") as batch:
        batch.add_column(sa.Column("upload_state", state, nullable=True))
        batch.add_column(sa.Column("upload_error", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("upload_state_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("material_rendition") as batch:
        batch.drop_column("upload_state_at")
        batch.drop_column("upload_error")
        batch.drop_column("upload_state")
