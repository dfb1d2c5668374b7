"""merge the feature branches

Revision ID: 0011_merge
Revises: 0004_alerts_contacts, 0005_events, 0006_votes, 0007_stats, 0008_materials, 0009_articles, 0010_open311
Create Date: 2026-11-23 20:53:34.582702

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_merge'
down_revision = ('0004_alerts_contacts', '0005_events', '0006_votes', '0007_stats', '0008_materials', '0009_articles', '0010_open311')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
