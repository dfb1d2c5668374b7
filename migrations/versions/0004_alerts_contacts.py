"""alerts and contacts: sensitive terms (seeded), alerts, duty roster, alert notices, community contact points

Revision ID: 0004_alerts_contacts
Revises: 0002
Create Date: 2026-11-23 20:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_alerts_contacts'
down_revision = '0002'
branch_labels = None
depends_on = None

# The starting list; editors maintain it in the console afterwards. Frozen here: later edits are data, not schema.
DEFAULT_TERMS = [
    ('暴力执法', 5), ('打人', 5), ('殴打', 5), ('打伤', 5), ('流血', 4), ('抢东西', 4), ('砸摊', 4),
    ('投诉城管', 4), ('12345投诉', 3), ('记者', 3), ('曝光', 3), ('媒体', 2), ('上热搜', 4), ('发微博', 2),
    ('发抖音', 2), ('维权', 2), ('上访', 3), ('报警', 2), ('拍视频', 1), ('城管', 1),
]


def upgrade():
    term = op.create_table('sensitive_term',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('term', sa.String(length=32), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('weight BETWEEN 1 AND 100', name=op.f('ck_sensitive_term_weight')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sensitive_term')),
    sa.UniqueConstraint('term', name=op.f('uq_sensitive_term_term'))
    )
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('excerpt', sa.String(length=500), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('NEW', 'ACKNOWLEDGED', 'CLOSED', name='alertstatus', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.Column('acknowledged_by_name', sa.String(length=64), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['staff.id'], name=op.f('fk_alert_acknowledged_by_id_staff'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert')),
    sa.UniqueConstraint('source', 'ref', name='uq_alert_source_ref')
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_openid'), ['openid'], unique=False)
        batch_op.create_index('ix_alert_status_created_at', ['status', 'created_at'], unique=False)

    op.create_table('alert_duty',
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_alert_duty_staff_id_staff'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('staff_id', name=op.f('pk_alert_duty'))
    )
    op.create_table('alert_notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Enum('DUTY', 'ESCALATION', name='noticeround', native_enum=False, length=16), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('staff_name', sa.String(length=64), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alert.id'], name=op.f('fk_alert_notice_alert_id_alert'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_alert_notice_staff_id_staff'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notice')),
    sa.UniqueConstraint('alert_id', 'round', 'staff_id', name='uq_alert_notice_once')
    )
    with op.batch_alter_table('alert_notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_notice_alert_id'), ['alert_id'], unique=False)

    op.create_table('contact_point',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('latitude', sa.Double(), nullable=False),
    sa.Column('longitude', sa.Double(), nullable=False),
    sa.Column('hours', sa.String(length=100), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('published', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180', name=op.f('ck_contact_point_position')),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_contact_point_unit_id_unit'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_point')),
    sa.UniqueConstraint('name', name=op.f('uq_contact_point_name'))
    )
    with op.batch_alter_table('contact_point', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_point_unit_id'), ['unit_id'], unique=False)

    now = sa.func.now()
    op.execute(
        term.insert().values([{'term': t, 'weight': w, 'enabled': True, 'created_at': now, 'updated_at': now}
                              for t, w in DEFAULT_TERMS])
    )


def downgrade():
    with op.batch_alter_table('contact_point', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_point_unit_id'))

    op.drop_table('contact_point')
    with op.batch_alter_table('alert_notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_notice_alert_id'))

    op.drop_table('alert_notice')
    op.drop_table('alert_duty')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_status_created_at')
        batch_op.drop_index(batch_op.f('ix_alert_openid'))

    op.drop_table('alert')
    op.drop_table('sensitive_term')
