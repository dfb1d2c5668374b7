"""tips: categories, tips, photos, history, support, chat drafts, notice outbox, blocked citizens

Revision ID: 0003_tips
Revises: 0002
Create Date: 2026-11-23 20:12:41.743471

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_tips'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tip_category',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('sort', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_category')),
    sa.UniqueConstraint('name', name=op.f('uq_tip_category_name'))
    )
    op.create_table('tip',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tracking_no', sa.String(length=16), nullable=False),
    sa.Column('submit_key', sa.String(length=64), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Enum('H5', 'CHAT', name='tipsource', native_enum=False, length=16), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('latitude', sa.Double(), nullable=True),
    sa.Column('longitude', sa.Double(), nullable=True),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('phone_enc', sa.Text(), nullable=True),
    sa.Column('status', sa.Enum('SUBMITTED', 'ACCEPTED', 'DISPATCHED', 'IN_PROGRESS', 'RESOLVED', 'REJECTED', 'DUPLICATE', name='tipstatus', native_enum=False, length=16), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('duplicate_of_id', sa.Integer(), nullable=True),
    sa.Column('support_count', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['duplicate_of_id'], ['tip.id'], name=op.f('fk_tip_duplicate_of_id_tip'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_tip_unit_id_unit'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip')),
    sa.UniqueConstraint('submit_key', name=op.f('uq_tip_submit_key')),
    sa.UniqueConstraint('tracking_no', name=op.f('uq_tip_tracking_no'))
    )
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_tip_lat_lng', ['latitude', 'longitude'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_openid'), ['openid'], unique=False)
        batch_op.create_index('ix_tip_status_category', ['status', 'category'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_unit_id'), ['unit_id'], unique=False)

    op.create_table('tip_block',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff.id'], name=op.f('fk_tip_block_created_by_id_staff'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_block')),
    sa.UniqueConstraint('openid', name=op.f('uq_tip_block_openid'))
    )
    op.create_table('tip_draft',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum('OPEN', 'SUBMITTED', 'CANCELLED', 'EXPIRED', name='tipdraftstate', native_enum=False, length=16), nullable=False),
    sa.Column('latitude', sa.Double(), nullable=True),
    sa.Column('longitude', sa.Double(), nullable=True),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], name=op.f('fk_tip_draft_tip_id_tip'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_draft'))
    )
    with op.batch_alter_table('tip_draft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_draft_openid'), ['openid'], unique=False)
        batch_op.create_index('uq_tip_draft_open_openid', ['openid'], unique=True, postgresql_where=sa.text("state = 'OPEN'"), sqlite_where=sa.text("state = 'OPEN'"))

    op.create_table('tip_notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('CITIZEN', 'UNIT', name='noticekind', native_enum=False, length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=96), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'SENDING', 'SENT', 'FAILED', name='noticestate', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('recipient', sa.String(length=64), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], name=op.f('fk_tip_notice_tip_id_tip'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_tip_notice_unit_id_unit'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_notice')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_tip_notice_dedupe_key'))
    )
    with op.batch_alter_table('tip_notice', schema=None) as batch_op:
        batch_op.create_index('ix_tip_notice_state_next', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_notice_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_status_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.Enum('SUBMITTED', 'ACCEPTED', 'DISPATCHED', 'IN_PROGRESS', 'RESOLVED', 'REJECTED', 'DUPLICATE', name='tipstatus', native_enum=False, length=16), nullable=True),
    sa.Column('to_status', sa.Enum('SUBMITTED', 'ACCEPTED', 'DISPATCHED', 'IN_PROGRESS', 'RESOLVED', 'REJECTED', 'DUPLICATE', name='tipstatus', native_enum=False, length=16), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('staff_name', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_tip_status_change_staff_id_staff'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], name=op.f('fk_tip_status_change_tip_id_tip'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_tip_status_change_unit_id_unit'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_status_change'))
    )
    with op.batch_alter_table('tip_status_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_status_change_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_support',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], name=op.f('fk_tip_support_tip_id_tip'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_support')),
    sa.UniqueConstraint('tip_id', 'openid', name='uq_tip_support_tip_id_openid')
    )
    op.create_table('tip_photo',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('draft_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('media_id', sa.String(length=128), nullable=True),
    sa.Column('state', sa.Enum('PENDING', 'READY', 'FAILED', name='photostate', native_enum=False, length=16), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('original_path', sa.String(length=200), nullable=True),
    sa.Column('original_sha256', sa.String(length=64), nullable=True),
    sa.Column('original_size', sa.Integer(), nullable=True),
    sa.Column('original_mime', sa.String(length=32), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('redacted', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['tip_draft.id'], name=op.f('fk_tip_photo_draft_id_tip_draft'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], name=op.f('fk_tip_photo_tip_id_tip'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_photo')),
    sa.UniqueConstraint('key', name=op.f('uq_tip_photo_key'))
    )
    with op.batch_alter_table('tip_photo', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_photo_draft_id'), ['draft_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_photo_tip_id'), ['tip_id'], unique=False)



def downgrade():
    with op.batch_alter_table('tip_photo', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_photo_tip_id'))
        batch_op.drop_index(batch_op.f('ix_tip_photo_draft_id'))

    op.drop_table('tip_photo')
    op.drop_table('tip_support')
    with op.batch_alter_table('tip_status_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_status_change_tip_id'))

    op.drop_table('tip_status_change')
    with op.batch_alter_table('tip_notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_notice_tip_id'))
        batch_op.drop_index('ix_tip_notice_state_next')

    op.drop_table('tip_notice')
    with op.batch_alter_table('tip_draft', schema=None) as batch_op:
        batch_op.drop_index('uq_tip_draft_open_openid', postgresql_where=sa.text("state = 'OPEN'"), sqlite_where=sa.text("state = 'OPEN'"))
        batch_op.drop_index(batch_op.f('ix_tip_draft_openid'))

    op.drop_table('tip_draft')
    op.drop_table('tip_block')
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_unit_id'))
        batch_op.drop_index('ix_tip_status_category')
        batch_op.drop_index(batch_op.f('ix_tip_openid'))
        batch_op.drop_index('ix_tip_lat_lng')
        batch_op.drop_index(batch_op.f('ix_tip_created_at'))

    op.drop_table('tip')
    op.drop_table('tip_category')
