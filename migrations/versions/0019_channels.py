"""channel: named permanent QR scenes (渠道二维码) with an optional reply rule; scans per scene read by index

Revision ID: 0019_channels
Revises: 0018_scale_indexes
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_channels"
down_revision = "0018_scale_indexes"
branch_labels = None
depends_on = None

SCAN_EVENTS = "event IN ('scan', 'subscribe')"


def upgrade():
    op.create_table(
        "channel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scene", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("reply_rule_id", sa.Integer(), nullable=True),
        sa.Column("qr_ticket", sa.String(length=256), nullable=True),
        sa.Column("qr_url", sa.String(length=256), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("substr(scene, 1, 5) <> 'bind_'", name=op.f("ck_channel_not_binding")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["staff.id"], name=op.f("fk_channel_created_by_id_staff"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["reply_rule_id"], ["reply_rule.id"], name=op.f("fk_channel_reply_rule_id_reply_rule"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_channel_unit_id_unit"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel")),
        sa.UniqueConstraint("reply_rule_id", name=op.f("uq_channel_reply_rule_id")),
        sa.UniqueConstraint("scene", name=op.f("uq_channel_scene")),
    )
    op.create_index(op.f("ix_channel_unit_id"), "channel", ["unit_id"], unique=False)
    # Scans per scene for the channel list: only SCAN and subscribe rows enter it, so the busy log's other writes
    # do not pay for it. Built CONCURRENTLY on PostgreSQL (outside a transaction): the log takes writes throughout.
    pg = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_inbound_message_scene",
            "inbound_message",
            ["event_key", "received_at"],
            postgresql_where=sa.text(SCAN_EVENTS),
            sqlite_where=sa.text(SCAN_EVENTS),
            postgresql_concurrently=pg,
        )


def downgrade():
    pg = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_inbound_message_scene", table_name="inbound_message", postgresql_concurrently=pg, if_exists=True
        )
    op.drop_index(op.f("ix_channel_unit_id"), table_name="channel")
    op.drop_table("channel")
    # The older code knows no "scene" match type: those rules would not even load.
    op.execute("DELETE FROM reply_rule WHERE match_type = 'SCENE'")
