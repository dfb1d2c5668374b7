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


def upgrade():
    op.drop_index("ix_inbound_message_openid", table_name="inbound_message")
    op.create_index("ix_inbound_message_openid_received", "inbound_message", ["openid", "received_at"])
    if op.get_bind().dialect.name == "postgresql":  # SQLite takes no NULLS LAST in an index
        op.create_index(
            "ix_follower_recent", "follower", [sa.text("subscribed_at DESC NULLS LAST"), sa.text("id DESC")]
        )
    op.create_index("ix_follower_first_subscribed", "follower", ["first_subscribed_at"])
    op.drop_index("ix_vote_campaign_candidate", table_name="vote")
    op.create_index("ix_vote_campaign_candidate", "vote", ["campaign_id", "candidate_id", "voided_at"])


def downgrade():
    op.drop_index("ix_vote_campaign_candidate", table_name="vote")
    op.create_index("ix_vote_campaign_candidate", "vote", ["campaign_id", "candidate_id"])
    op.drop_index("ix_follower_first_subscribed", table_name="follower")
    op.drop_index("ix_follower_recent", table_name="follower", if_exists=True)
    op.drop_index("ix_inbound_message_openid_received", table_name="inbound_message")
    op.create_index("ix_inbound_message_openid", "inbound_message", ["openid"])
