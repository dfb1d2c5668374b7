"""Columns (栏目), articles with their versions, and pushes (推送: up to 8 articles published together)."""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from server.extensions import db

__all__ = [
    "Article",
    "ArticlePush",
    "ArticleStatus",
    "ArticleVersion",
    "Cadence",
    "ColumnRequest",
    "NewsColumn",
    "PublishMode",
    "PublishOrphan",
    "PushNotice",
    "PushStatus",
]


class Cadence(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    ADHOC = "adhoc"

    @property
    def label(self) -> str:
        return {"daily": "每天", "weekly": "每周", "adhoc": "不定期"}[self.value]


class PublishMode(enum.StrEnum):
    PUBLISH = "publish"  # 发布 (freepublish): no notice to followers, no quota
    MASS_SEND = "mass_send"  # 群发: notifies followers; recorded choice only, published as 发布 for now

    @property
    def label(self) -> str:
        return {"publish": "发布（不推送通知）", "mass_send": "群发（通知粉丝，暂未实现）"}[self.value]


class ArticleStatus(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # its push may or may not have gone out: a person checks the WeChat platform

    @property
    def label(self) -> str:
        return {
            "draft": "草稿",
            "submitted": "待审核",
            "approved": "已通过",
            "scheduled": "已排期",
            "publishing": "发布中",
            "published": "已发布",
            "failed": "发布失败",
            "uncertain": "发布状态不明",
        }[self.value]

    @property
    def alarming(self) -> bool:
        """Shown in red: someone has to act."""
        return self in (ArticleStatus.FAILED, ArticleStatus.UNCERTAIN)


class PushStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"  # claimed by a worker (lease_until); draft/add and freepublish/submit under way
    SUBMITTED = "submitted"  # publish_id known; waiting for PUBLISHJOBFINISH (or the polling fallback)
    PUBLISHED = "published"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # freepublish/submit was sent but its answer never recorded (the worker died): it may have been published.
    # Never resubmitted by itself; WeChat's PUBLISHJOBFINISH settles it (matched by titles), or a person checks the
    # WeChat platform and marks it published or retries.
    UNCERTAIN = "uncertain"

    @property
    def label(self) -> str:
        return {
            "scheduled": "已排期",
            "publishing": "发布中",
            "submitted": "已提交微信",
            "published": "已发布",
            "failed": "失败",
            "cancelled": "已取消",
            "uncertain": "状态不明",
        }[self.value]

    @property
    def alarming(self) -> bool:
        """Shown in red and sent to the duty editors: someone has to act."""
        return self in (PushStatus.FAILED, PushStatus.UNCERTAIN)


class NewsColumn(db.Model):
    """A fixed column (栏目) such as 每日一案: cadence, publish time (Beijing), template and feeding units."""

    __tablename__ = "news_column"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    cadence: Mapped[Cadence] = mapped_column(sa.Enum(Cadence, native_enum=False, length=16), default=Cadence.DAILY)
    weekday: Mapped[int | None] = mapped_column()  # weekly columns: 0 = Monday
    publish_time: Mapped[time] = mapped_column(sa.Time(), default=time(8, 0))  # Asia/Shanghai wall time
    publish_mode: Mapped[PublishMode] = mapped_column(
        sa.Enum(PublishMode, native_enum=False, length=16), default=PublishMode.PUBLISH
    )
    title_pattern: Mapped[str] = mapped_column(sa.String(64), default="")  # e.g. "每日一案｜{title}"
    header_html: Mapped[str] = mapped_column(sa.Text, default="")
    footer_html: Mapped[str] = mapped_column(sa.Text, default="")
    body_template: Mapped[str] = mapped_column(sa.Text, default="")  # the 案情—处理—法条—提示 skeleton
    feeder_unit_ids: Mapped[list[int]] = mapped_column(sa.JSON, default=list)  # rotation order of 报送单位
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def schedule_label(self) -> str:
        """每天 08:00, 每周五 18:00, 不定期."""
        at = f"{self.publish_time:%H:%M}"
        if self.cadence is Cadence.DAILY:
            return f"每天 {at}"
        if self.cadence is Cadence.WEEKLY:
            return f"每周{'一二三四五六日'[self.weekday] if self.weekday is not None else ''} {at}"
        return self.cadence.label


class ArticlePush(db.Model):
    """One 推送: up to 8 articles sent to WeChat as one draft and one freepublish job, at a time slot."""

    __tablename__ = "article_push"
    __table_args__ = (sa.Index("ix_article_push_due", "status", "scheduled_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    column_id: Mapped[int | None] = mapped_column(sa.ForeignKey("news_column.id", ondelete="SET NULL"), index=True)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[PushStatus] = mapped_column(
        sa.Enum(PushStatus, native_enum=False, length=16), default=PushStatus.SCHEDULED
    )
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    # Recorded as soon as WeChat answers, so a retry resumes instead of adding or submitting again.
    draft_media_id: Mapped[str | None] = mapped_column(sa.String(128))
    submit_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    publish_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    wechat_article_id: Mapped[str | None] = mapped_column(sa.String(128))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polls: Mapped[int] = mapped_column(default=0)
    error_code: Mapped[int | None] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(sa.String(500))
    manual: Mapped[bool] = mapped_column(default=False)  # marked published by hand (48001 fallback)
    # Each failure (or uncertain outcome) gets the next number; notices go out once per number.
    failure_no: Mapped[int] = mapped_column(default=0, server_default="0")
    notified_no: Mapped[int] = mapped_column(default=0, server_default="0")  # the last failure_no notices went for
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    column: Mapped[NewsColumn | None] = relationship()
    articles: Mapped[list[Article]] = relationship(back_populates="push", order_by="Article.push_index")


class PublishOrphan(db.Model):
    """A successful publish job WeChat reported (PUBLISHJOBFINISH) under a publish_id no push has recorded, kept until
    it is attributed to the push whose submit answer was lost, or given up on. A row, so that it survives the broker
    and a flushed Redis: the event is not sent again once /wechat answered it."""

    __tablename__ = "publish_orphan"

    publish_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    article_id: Mapped[str] = mapped_column(sa.String(128))
    urls: Mapped[list[str]] = mapped_column(sa.JSON)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class Article(db.Model):
    """An article (推文): cleaned WeChat-safe body, cover, column, submitting unit; moves through review."""

    __tablename__ = "article"

    id: Mapped[int] = mapped_column(primary_key=True)
    column_id: Mapped[int | None] = mapped_column(sa.ForeignKey("news_column.id", ondelete="SET NULL"), index=True)
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(sa.String(32))
    author: Mapped[str] = mapped_column(sa.String(16), default="")
    digest: Mapped[str] = mapped_column(sa.String(128), default="")
    body_html: Mapped[str] = mapped_column(sa.Text, default="")
    source_url: Mapped[str] = mapped_column(sa.String(1024), default="")
    legal_refs: Mapped[str] = mapped_column(sa.Text, default="")
    cover_path: Mapped[str | None] = mapped_column(sa.String(255))  # the 2.35:1 JPEG under MEDIA_ROOT
    cover_media_id: Mapped[str | None] = mapped_column(sa.String(128))  # permanent material, once uploaded
    wechat_images: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)  # local src -> mmbiz URL
    status: Mapped[ArticleStatus] = mapped_column(
        sa.Enum(ArticleStatus, native_enum=False, length=16), default=ArticleStatus.DRAFT, index=True
    )
    version: Mapped[int] = mapped_column(default=1)
    reviewed_version: Mapped[int | None] = mapped_column()  # the version the last review decision saw
    approved_version: Mapped[int | None] = mapped_column()
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # first submission (投稿), for the scoreboard
    review_comment: Mapped[str] = mapped_column(sa.String(500), default="")
    push_id: Mapped[int | None] = mapped_column(sa.ForeignKey("article_push.id", ondelete="SET NULL"), index=True)
    push_index: Mapped[int] = mapped_column(default=0)
    url: Mapped[str | None] = mapped_column(sa.String(1024))  # the published article's URL
    wechat_article_id: Mapped[str | None] = mapped_column(sa.String(128))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    column: Mapped[NewsColumn | None] = relationship()
    push: Mapped[ArticlePush | None] = relationship(back_populates="articles")
    versions: Mapped[list[ArticleVersion]] = relationship(
        back_populates="article", order_by="ArticleVersion.version", cascade="all, delete-orphan"
    )

    @property
    def status_label(self) -> str:
        """As the status, but a draft the reviewer sent back says so until it is submitted again."""
        returned = self.reviewed_version is not None and self.approved_version != self.reviewed_version
        return "退回修改" if self.status is ArticleStatus.DRAFT and returned else self.status.label


class ArticleVersion(db.Model):
    """Every saved state of an article, kept: the reviewer's diff compares these."""

    __tablename__ = "article_version"
    __table_args__ = (sa.UniqueConstraint("article_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(sa.ForeignKey("article.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(sa.String(32))
    digest: Mapped[str] = mapped_column(sa.String(128), default="")
    body_html: Mapped[str] = mapped_column(sa.Text, default="")
    body_text: Mapped[str] = mapped_column(sa.Text, default="")
    legal_refs: Mapped[str] = mapped_column(sa.Text, default="")
    saved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    article: Mapped[Article] = relationship(back_populates="versions")


class ColumnRequest(db.Model):
    """A request to a unit's publicity contact to feed a column's slot; one per column and day."""

    __tablename__ = "column_request"
    __table_args__ = (sa.UniqueConstraint("column_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    column_id: Mapped[int] = mapped_column(sa.ForeignKey("news_column.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(sa.Date())
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    column: Mapped[NewsColumn] = relationship()


class PushNotice(db.Model):
    """A template message to one duty editor about one failure of a push; the unique key sends it once."""

    __tablename__ = "push_notice"
    __table_args__ = (sa.UniqueConstraint("push_id", "failure_no", "staff_id", name="uq_push_notice_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    push_id: Mapped[int] = mapped_column(sa.ForeignKey("article_push.id", ondelete="CASCADE"), index=True)
    failure_no: Mapped[int] = mapped_column()
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"))
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
