"""events: events, sessions, registrations, notices

Revision ID: 0005_events
Revises: 0002
Create Date: 2026-11-23 20:22:11.655848

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_events'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('OFFLINE', 'LIVESTREAM', name='eventkind', native_enum=False, length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('registration_opens_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registration_closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('max_companions', sa.Integer(), nullable=False),
    sa.Column('required_fields', sa.JSON(), nullable=False),
    sa.Column('questions', sa.JSON(), nullable=False),
    sa.Column('hold_minutes', sa.Integer(), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('published', sa.Boolean(), nullable=False),
    sa.Column('anonymised_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('hold_minutes >= 1', name=op.f('ck_event_hold')),
    sa.CheckConstraint('max_companions >= 0 AND max_companions <= 10', name=op.f('ck_event_companions')),
    sa.CheckConstraint('registration_closes_at > registration_opens_at', name=op.f('ck_event_window')),
    sa.CheckConstraint('retention_days >= 1', name=op.f('ck_event_retention')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event'))
    )
    op.create_table('event_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('venue', sa.String(length=128), nullable=False),
    sa.Column('stream_url', sa.String(length=512), nullable=False),
    sa.Column('quota', sa.Integer(), nullable=False),
    sa.Column('taken', sa.Integer(), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_event_session_period')),
    sa.CheckConstraint('taken >= 0 AND taken <= quota', name=op.f('ck_event_session_taken')),
    sa.ForeignKeyConstraint(['event_id'], ['event.id'], name=op.f('fk_event_session_event_id_event'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_session'))
    )
    with op.batch_alter_table('event_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_session_event_id'), ['event_id'], unique=False)

    op.create_table('registration',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('CONFIRMED', 'WAITING', 'OFFERED', 'CANCELLED', 'EXPIRED', name='registrationstatus', native_enum=False, length=16), nullable=False),
    sa.Column('companions', sa.Integer(), nullable=False),
    sa.Column('name_enc', sa.Text(), nullable=True),
    sa.Column('phone_enc', sa.Text(), nullable=True),
    sa.Column('id_number_enc', sa.Text(), nullable=True),
    sa.Column('answers', sa.JSON(), nullable=True),
    sa.Column('ticket', sa.String(length=16), nullable=False),
    sa.Column('walk_in', sa.Boolean(), nullable=False),
    sa.Column('hold_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checkin_nonce', sa.String(length=64), nullable=True),
    sa.Column('checked_in_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('companions >= 0', name=op.f('ck_registration_companions')),
    sa.ForeignKeyConstraint(['checked_in_by_id'], ['staff.id'], name=op.f('fk_registration_checked_in_by_id_staff'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['event_id'], ['event.id'], name=op.f('fk_registration_event_id_event'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['event_session.id'], name=op.f('fk_registration_session_id_event_session'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registration'))
    )
    with op.batch_alter_table('registration', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registration_hold_expires_at'), ['hold_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_registration_openid'), ['openid'], unique=False)
        batch_op.create_index('ix_registration_session_status', ['session_id', 'status', 'id'], unique=False)
        batch_op.create_index('uq_registration_event_openid_active', ['event_id', 'openid'], unique=True, postgresql_where=sa.text("status IN ('CONFIRMED', 'WAITING', 'OFFERED')"), sqlite_where=sa.text("status IN ('CONFIRMED', 'WAITING', 'OFFERED')"))

    op.create_table('event_notice',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('registration_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.Enum('OFFER', 'DAY_BEFORE', 'HOUR_BEFORE', 'LIVE_START', name='eventnoticekind', native_enum=False, length=16), nullable=False),
    sa.Column('state', sa.Enum('SENDING', 'SENT', 'FAILED', name='eventnoticestate', native_enum=False, length=16), nullable=False),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['registration_id'], ['registration.id'], name=op.f('fk_event_notice_registration_id_registration'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_notice')),
    sa.UniqueConstraint('registration_id', 'kind', name='uq_event_notice_registration_kind')
    )


def downgrade():
    op.drop_table('event_notice')
    with op.batch_alter_table('registration', schema=None) as batch_op:
        batch_op.drop_index('uq_registration_event_openid_active', postgresql_where=sa.text("status IN ('CONFIRMED', 'WAITING', 'OFFERED')"), sqlite_where=sa.text("status IN ('CONFIRMED', 'WAITING', 'OFFERED')"))
        batch_op.drop_index('ix_registration_session_status')
        batch_op.drop_index(batch_op.f('ix_registration_openid'))
        batch_op.drop_index(batch_op.f('ix_registration_hold_expires_at'))

    op.drop_table('registration')
    with op.batch_alter_table('event_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_session_event_id'))

    op.drop_table('event_session')
    op.drop_table('event')
