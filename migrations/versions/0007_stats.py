"""stats: datacube days and figures, annual plan and projects, manual records, score weights, reports

Revision ID: 0007_stats
Revises: 0002
Create Date: 2026-11-23 20:25:12.050759

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_stats'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('datacube_day',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('endpoint', sa.String(length=48), nullable=False),
    sa.Column('ref_date', sa.Date(), nullable=False),
    sa.Column('is_delay', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=48), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datacube_day')),
    sa.UniqueConstraint('endpoint', 'ref_date', name='uq_datacube_day_endpoint_ref_date')
    )
    op.create_table('datacube_sync_state',
    sa.Column('endpoint', sa.String(length=48), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('cursor', sa.Date(), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('endpoint', name=op.f('pk_datacube_sync_state'))
    )
    op.create_table('stat_article',
    sa.Column('msgid', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=256), nullable=True),
    sa.Column('publish_date', sa.Date(), nullable=False),
    sa.Column('stat_date', sa.Date(), nullable=False),
    sa.Column('read_user', sa.Integer(), nullable=False),
    sa.Column('share_user', sa.Integer(), nullable=False),
    sa.Column('like_user', sa.Integer(), nullable=False),
    sa.Column('zaikan_user', sa.Integer(), nullable=False),
    sa.Column('comment_count', sa.Integer(), nullable=False),
    sa.Column('collection_user', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('msgid', name=op.f('pk_stat_article'))
    )
    with op.batch_alter_table('stat_article', schema=None) as batch_op:
        batch_op.create_index('ix_stat_article_publish_read', ['publish_date', 'read_user'], unique=False)

    op.create_table('stat_article_daily',
    sa.Column('ref_date', sa.Date(), nullable=False),
    sa.Column('msgid', sa.String(length=32), nullable=False),
    sa.Column('read_user', sa.Integer(), nullable=True),
    sa.Column('share_user', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('ref_date', 'msgid', name=op.f('pk_stat_article_daily'))
    )
    op.create_table('stat_daily',
    sa.Column('ref_date', sa.Date(), nullable=False),
    sa.Column('cumulate_user', sa.Integer(), nullable=True),
    sa.Column('new_user', sa.Integer(), nullable=True),
    sa.Column('cancel_user', sa.Integer(), nullable=True),
    sa.Column('read_user', sa.Integer(), nullable=True),
    sa.Column('share_user', sa.Integer(), nullable=True),
    sa.Column('like_user', sa.Integer(), nullable=True),
    sa.Column('zaikan_user', sa.Integer(), nullable=True),
    sa.Column('comment_count', sa.Integer(), nullable=True),
    sa.Column('collection_user', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('ref_date', name=op.f('pk_stat_daily'))
    )
    op.create_table('stat_plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('follower_growth_pct', sa.Double(), nullable=False),
    sa.Column('read_growth_pct', sa.Double(), nullable=False),
    sa.Column('articles_100k', sa.Integer(), nullable=False),
    sa.Column('positive_reports', sa.Integer(), nullable=False),
    sa.Column('activities', sa.Integer(), nullable=False),
    sa.Column('livestreams', sa.Integer(), nullable=False),
    sa.Column('products', sa.Integer(), nullable=False),
    sa.Column('baseline_followers', sa.Integer(), nullable=True),
    sa.Column('baseline_reads', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stat_plan')),
    sa.UniqueConstraint('year', name=op.f('uq_stat_plan_year'))
    )
    op.create_table('stat_report',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('generated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stat_report')),
    sa.UniqueConstraint('kind', 'period_start', name='uq_stat_report_kind_period_start')
    )
    op.create_table('stat_score_weight',
    sa.Column('metric', sa.String(length=48), nullable=False),
    sa.Column('weight', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('metric', name=op.f('pk_stat_score_weight'))
    )
    op.create_table('stat_user_source_daily',
    sa.Column('ref_date', sa.Date(), nullable=False),
    sa.Column('user_source', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('new_user', sa.Integer(), nullable=False),
    sa.Column('cancel_user', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('ref_date', 'user_source', name=op.f('pk_stat_user_source_daily'))
    )
    op.create_table('stat_plan_project',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('months', sa.JSON(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(length=256), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['stat_plan.id'], name=op.f('fk_stat_plan_project_plan_id_stat_plan'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_stat_plan_project_unit_id_unit'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stat_plan_project'))
    )
    with op.batch_alter_table('stat_plan_project', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stat_plan_project_plan_id'), ['plan_id'], unique=False)

    op.create_table('stat_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('MEDIA_REPORT', 'ACTIVITY', 'LIVESTREAM', 'PRODUCT', name='recordkind', native_enum=False, length=16), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('outlet', sa.String(length=100), nullable=False),
    sa.Column('happened_on', sa.Date(), nullable=False),
    sa.Column('link', sa.String(length=500), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('submit_key', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff.id'], name=op.f('fk_stat_record_created_by_id_staff'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_stat_record_unit_id_unit'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stat_record')),
    sa.UniqueConstraint('submit_key', name=op.f('uq_stat_record_submit_key'))
    )
    with op.batch_alter_table('stat_record', schema=None) as batch_op:
        batch_op.create_index('ix_stat_record_kind_day', ['kind', 'happened_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_stat_record_unit_id'), ['unit_id'], unique=False)



def downgrade():
    with op.batch_alter_table('stat_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stat_record_unit_id'))
        batch_op.drop_index('ix_stat_record_kind_day')

    op.drop_table('stat_record')
    with op.batch_alter_table('stat_plan_project', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stat_plan_project_plan_id'))

    op.drop_table('stat_plan_project')
    op.drop_table('stat_user_source_daily')
    op.drop_table('stat_score_weight')
    op.drop_table('stat_report')
    op.drop_table('stat_plan')
    op.drop_table('stat_daily')
    op.drop_table('stat_article_daily')
    with op.batch_alter_table('stat_article', schema=None) as batch_op:
        batch_op.drop_index('ix_stat_article_publish_read')

    op.drop_table('stat_article')
    op.drop_table('datacube_sync_state')
    op.drop_table('datacube_day')
