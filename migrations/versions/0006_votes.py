"""votes: campaigns, candidates, quota counters, votes; surveys, questions, responses, answers

Revision ID: 0006_votes
Revises: 0002
Create Date: 2026-11-23 20:12:55.558719

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_votes'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('survey',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('intro', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey'))
    )
    op.create_table('vote_campaign',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('votes_per_day', sa.Integer(), nullable=False),
    sa.Column('per_candidate_per_day', sa.Integer(), nullable=False),
    sa.Column('followers_only', sa.Boolean(), nullable=False),
    sa.Column('results_policy', sa.Enum('LIVE', 'HIDDEN', 'AFTER_END', name='resultspolicy', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_vote_campaign_period')),
    sa.CheckConstraint('votes_per_day >= 1 AND per_candidate_per_day >= 1', name=op.f('ck_vote_campaign_limits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vote_campaign'))
    )
    op.create_table('survey_question',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('SINGLE', 'MULTIPLE', 'SCALE', 'TEXT', name='questionkind', native_enum=False, length=16), nullable=False),
    sa.Column('text', sa.String(length=200), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('is_district', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['survey.id'], name=op.f('fk_survey_question_survey_id_survey'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_question')),
    sa.UniqueConstraint('survey_id', 'position', name='uq_survey_question_position')
    )
    op.create_table('survey_response',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('district', sa.String(length=32), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['survey.id'], name=op.f('fk_survey_response_survey_id_survey'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_response')),
    sa.UniqueConstraint('survey_id', 'openid', name='uq_survey_response_once')
    )
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_response_district'), ['district'], unique=False)

    op.create_table('vote_candidate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('unit_name', sa.String(length=64), nullable=False),
    sa.Column('story', sa.Text(), nullable=False),
    sa.Column('photo_path', sa.String(length=128), nullable=True),
    sa.Column('photo_url', sa.String(length=512), nullable=True),
    sa.Column('sort', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['vote_campaign.id'], name=op.f('fk_vote_candidate_campaign_id_vote_campaign'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vote_candidate'))
    )
    with op.batch_alter_table('vote_candidate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_candidate_campaign_id'), ['campaign_id'], unique=False)

    op.create_table('vote_quota',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.CheckConstraint('used >= 1', name=op.f('ck_vote_quota_used')),
    sa.ForeignKeyConstraint(['campaign_id'], ['vote_campaign.id'], name=op.f('fk_vote_quota_campaign_id_vote_campaign'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'openid', 'day', name=op.f('pk_vote_quota'))
    )
    op.create_table('survey_answer',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('response_id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['question_id'], ['survey_question.id'], name=op.f('fk_survey_answer_question_id_survey_question'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['response_id'], ['survey_response.id'], name=op.f('fk_survey_answer_response_id_survey_response'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_answer'))
    )
    with op.batch_alter_table('survey_answer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_answer_question_id'), ['question_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_survey_answer_response_id'), ['response_id'], unique=False)

    op.create_table('vote',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('candidate_seq', sa.Integer(), nullable=False),
    sa.Column('cast_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('subnet', sa.String(length=49), nullable=False),
    sa.Column('user_agent', sa.String(length=256), nullable=False),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('void_reason', sa.String(length=256), nullable=True),
    sa.Column('voided_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['vote_campaign.id'], name=op.f('fk_vote_campaign_id_vote_campaign'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['candidate_id'], ['vote_candidate.id'], name=op.f('fk_vote_candidate_id_vote_candidate'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vote')),
    sa.UniqueConstraint('campaign_id', 'candidate_id', 'openid', 'day', 'candidate_seq', name='uq_vote_cand_slot'),
    sa.UniqueConstraint('campaign_id', 'openid', 'day', 'seq', name='uq_vote_daily_slot')
    )
    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.create_index('ix_vote_campaign_candidate', ['campaign_id', 'candidate_id'], unique=False)
        batch_op.create_index('ix_vote_campaign_ip', ['campaign_id', 'ip'], unique=False)

    op.create_table('vote_candidate_quota',
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.CheckConstraint('used >= 1', name=op.f('ck_vote_candidate_quota_used')),
    sa.ForeignKeyConstraint(['candidate_id'], ['vote_candidate.id'], name=op.f('fk_vote_candidate_quota_candidate_id_vote_candidate'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('candidate_id', 'openid', 'day', name=op.f('pk_vote_candidate_quota'))
    )


def downgrade():
    op.drop_table('vote_candidate_quota')
    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.drop_index('ix_vote_campaign_ip')
        batch_op.drop_index('ix_vote_campaign_candidate')

    op.drop_table('vote')
    with op.batch_alter_table('survey_answer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_answer_response_id'))
        batch_op.drop_index(batch_op.f('ix_survey_answer_question_id'))

    op.drop_table('survey_answer')
    op.drop_table('vote_quota')
    with op.batch_alter_table('vote_candidate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_candidate_campaign_id'))

    op.drop_table('vote_candidate')
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_response_district'))

    op.drop_table('survey_response')
    op.drop_table('survey_question')
    op.drop_table('vote_campaign')
    op.drop_table('survey')
