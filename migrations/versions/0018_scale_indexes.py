"""Indexes for three years of data: follower order, a follower's latest message, vote counts per campaign

Revision ID: 0018_scale_indexes
Revises: 0017_alert_notice_retry
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_scale_indexes"
down_revision = "0017_alert_notice_retry"
branch_labels = None
depends_on = None

# On PostgreSQL built CONCURRENTLY (outside a transaction), each new index before the one it replaces is dropped:
# the message log and the votes take writes throughout. A plain CREATE INDEX would block them for the whole build.


def _create(name, table, columns, *, postgresql):
    op.create_index(name, table, columns, postgresql_concurrently=postgresql)


def _drop(name, table, *, postgresql):
    op.drop_index(name, table_name=table, postgresql_concurrently=postgresql, if_exists=True)


def upgrade():
    pg = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        _create("ix_inbound_message_openid_received", "inbound_message", ["openid", "received_at"], postgresql=pg)
        _drop("ix_inbound_message_openid", "inbound_message", postgresql=pg)
        if pg:  # SQLite takes no NULLS LAST in an index
            _create(
                "ix_follower_recent", "follower", [sa.text("subscribed_at DESC NULLS LAST"), sa.text("id DESC")],
                postgresql=pg,
            )
        _create("ix_follower_first_subscribed", "follower", ["first_subscribed_at"], postgresql=pg)
        _create("ix_vote_campaign_candidate_new", "vote", ["campaign_id", "candidate_id", "voided_at"], postgresql=pg)
        _drop("ix_vote_campaign_candidate", "vote", postgresql=pg)
    if pg:
        op.execute("ALTER INDEX ix_vote_campaign_candidate_new RENAME TO ix_vote_campaign_candidate")
    else:  # SQLite cannot rename an index: build it under its name (the demo's tables are small)
        op.drop_index("ix_vote_campaign_candidate_new", table_name="vote")
        op.create_index("ix_vote_campaign_candidate", "vote", ["campaign_id", "candidate_id", "voided_at"])


def downgrade():
    pg = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        _drop("ix_vote_campaign_candidate", "vote", postgresql=pg)
        _create("ix_vote_campaign_candidate", "vote", ["campaign_id", "candidate_id"], postgresql=pg)
        _drop("ix_follower_first_subscribed", "follower", postgresql=pg)
        _drop("ix_follower_recent", "follower", postgresql=pg)
        _create("ix_inbound_message_openid", "inbound_message", ["openid"], postgresql=pg)
        _drop("ix_inbound_message_openid_received", "inbound_message", postgresql=pg)
