"""articles: columns, pushes, articles, versions, column requests

Revision ID: 0009_articles
Revises: 0002
Create Date: 2026-11-30 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0009_articles"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "news_column",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column(
            "cadence",
            sa.Enum("DAILY", "WEEKLY", "ADHOC", name="cadence", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("publish_time", sa.Time(), nullable=False),
        sa.Column(
            "publish_mode",
            sa.Enum("PUBLISH", "MASS_SEND", name="publishmode", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("title_pattern", sa.String(length=64), nullable=False),
        sa.Column("header_html", sa.Text(), nullable=False),
        sa.Column("footer_html", sa.Text(), nullable=False),
        sa.Column("body_template", sa.Text(), nullable=False),
        sa.Column("feeder_unit_ids", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_news_column")),
        sa.UniqueConstraint("name", name=op.f("uq_news_column_name")),
    )
    op.create_table(
        "article_push",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("column_id", sa.Integer(), nullable=True),
        sa.Column("scheduled_at", TZ, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "SCHEDULED",
                "PUBLISHING",
                "SUBMITTED",
                "PUBLISHED",
                "FAILED",
                "CANCELLED",
                name="pushstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("draft_media_id", sa.String(length=128), nullable=True),
        sa.Column("submit_started_at", TZ, nullable=True),
        sa.Column("publish_id", sa.String(length=64), nullable=True),
        sa.Column("wechat_article_id", sa.String(length=128), nullable=True),
        sa.Column("submitted_at", TZ, nullable=True),
        sa.Column("published_at", TZ, nullable=True),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["column_id"], ["news_column.id"], name=op.f("fk_article_push_column_id_news_column"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["staff.id"], name=op.f("fk_article_push_created_by_id_staff"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_push")),
        sa.UniqueConstraint("publish_id", name=op.f("uq_article_push_publish_id")),
    )
    op.create_index("ix_article_push_due", "article_push", ["status", "scheduled_at"])
    op.create_index(op.f("ix_article_push_column_id"), "article_push", ["column_id"])
    op.create_table(
        "article",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("column_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=32), nullable=False),
        sa.Column("author", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("source_url", sa.String(length=1024), nullable=False),
        sa.Column("legal_refs", sa.Text(), nullable=False),
        sa.Column("cover_path", sa.String(length=255), nullable=True),
        sa.Column("cover_media_id", sa.String(length=128), nullable=True),
        sa.Column("wechat_images", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "DRAFT",
                "SUBMITTED",
                "APPROVED",
                "SCHEDULED",
                "PUBLISHING",
                "PUBLISHED",
                "FAILED",
                name="articlestatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reviewed_version", sa.Integer(), nullable=True),
        sa.Column("approved_version", sa.Integer(), nullable=True),
        sa.Column("review_comment", sa.String(length=500), nullable=False),
        sa.Column("push_id", sa.Integer(), nullable=True),
        sa.Column("push_index", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=True),
        sa.Column("wechat_article_id", sa.String(length=128), nullable=True),
        sa.Column("published_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["column_id"], ["news_column.id"], name=op.f("fk_article_column_id_news_column"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_article_unit_id_unit"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["staff.id"], name=op.f("fk_article_created_by_id_staff"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["push_id"], ["article_push.id"], name=op.f("fk_article_push_id_article_push"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article")),
    )
    for col in ("column_id", "unit_id", "status", "push_id"):
        op.create_index(op.f(f"ix_article_{col}"), "article", [col])
    op.create_table(
        "article_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("legal_refs", sa.Text(), nullable=False),
        sa.Column("saved_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"], ["article.id"], name=op.f("fk_article_version_article_id_article"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["saved_by_id"], ["staff.id"], name=op.f("fk_article_version_saved_by_id_staff"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_version")),
        sa.UniqueConstraint("article_id", "version", name=op.f("uq_article_version_article_id")),
    )
    op.create_table(
        "column_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("column_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["column_id"], ["news_column.id"], name=op.f("fk_column_request_column_id_news_column"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["unit.id"], name=op.f("fk_column_request_unit_id_unit"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_column_request_staff_id_staff"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_column_request")),
        sa.UniqueConstraint("column_id", "day", name=op.f("uq_column_request_column_id")),
    )
    op.create_index(op.f("ix_column_request_staff_id"), "column_request", ["staff_id"])


def downgrade():
    op.drop_table("column_request")  # its indexes and constraints go with it
    op.drop_table("article_version")
    op.drop_table("article")
    op.drop_table("article_push")
    op.drop_table("news_column")
