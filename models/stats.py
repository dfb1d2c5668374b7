"""Statistics: WeChat datacube data by Beijing day, the annual publicity plan, manual records, scoring, reports.

Every datacube table is keyed by what WeChat keys it by (ref_date, plus source or msgid), and the sync upserts, so
running it twice, or on two workers at once, stores each day once.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import BigIntPK, UTCDateTime, utcnow
from models.staff import Unit
from server.extensions import db

__all__ = [
    "AnnualPlan",
    "DatacubeDay",
    "DatacubeSyncState",
    "PlanProject",
    "PublicityRecord",
    "RecordKind",
    "ScoreWeight",
    "StatArticle",
    "StatArticleDaily",
    "StatDaily",
    "StatReport",
    "StatUserSourceDaily",
]


class DatacubeSyncState(db.Model):
    """One row per datacube endpoint: where its backfill starts and how the last run went."""

    __tablename__ = "datacube_sync_state"

    endpoint: Mapped[str] = mapped_column(sa.String(48), primary_key=True)
    start_date: Mapped[date] = mapped_column(sa.Date)  # the backfill origin: days from here to yesterday are wanted
    cursor: Mapped[date | None] = mapped_column(sa.Date)  # the last day of the last chunk committed
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(256))


class DatacubeDay(db.Model):
    """A day an endpoint answered for: fetched once, again only while WeChat marks it is_delay (or still moving)."""

    __tablename__ = "datacube_day"
    __table_args__ = (sa.UniqueConstraint("endpoint", "ref_date", name="uq_datacube_day_endpoint_ref_date"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(48))
    ref_date: Mapped[date] = mapped_column(sa.Date)
    is_delay: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str] = mapped_column(sa.String(48))  # the endpoint that actually answered (a fallback maybe)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StatDaily(db.Model):
    """The account's figures for one Beijing day; each endpoint fills its own columns (NULL: not fetched yet)."""

    __tablename__ = "stat_daily"

    ref_date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    cumulate_user: Mapped[int | None]  # followers at the end of the day (getusercumulate)
    new_user: Mapped[int | None]  # getusersummary, all sources
    cancel_user: Mapped[int | None]
    read_user: Mapped[int | None]  # getbizsummary (getuserread as the fallback)
    share_user: Mapped[int | None]
    like_user: Mapped[int | None]
    zaikan_user: Mapped[int | None]
    comment_count: Mapped[int | None]
    collection_user: Mapped[int | None]


class StatUserSourceDaily(db.Model):
    """getusersummary: new and cancelled followers per day and WeChat user_source."""

    __tablename__ = "stat_user_source_daily"

    ref_date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    user_source: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    new_user: Mapped[int] = mapped_column(default=0)
    cancel_user: Mapped[int] = mapped_column(default=0)


class StatArticle(db.Model):
    """A published article and its cumulative figures as of stat_date (getarticletotaldetail, or getarticletotal)."""

    __tablename__ = "stat_article"
    __table_args__ = (sa.Index("ix_stat_article_publish_read", "publish_date", "read_user"),)

    msgid: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    title: Mapped[str | None] = mapped_column(sa.String(256))
    publish_date: Mapped[date] = mapped_column(sa.Date)
    stat_date: Mapped[date] = mapped_column(sa.Date)
    read_user: Mapped[int] = mapped_column(default=0)
    share_user: Mapped[int] = mapped_column(default=0)
    like_user: Mapped[int] = mapped_column(default=0)
    zaikan_user: Mapped[int] = mapped_column(default=0)
    comment_count: Mapped[int] = mapped_column(default=0)
    collection_user: Mapped[int] = mapped_column(default=0)


class StatArticleDaily(db.Model):
    """getarticleread / getarticleshare: one article's readers and sharers on one day."""

    __tablename__ = "stat_article_daily"

    ref_date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    msgid: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    read_user: Mapped[int | None]
    share_user: Mapped[int | None]


class AnnualPlan(db.Model):
    """The year's publicity targets (年度宣传计划) and the baseline taken on 1 January."""

    __tablename__ = "stat_plan"

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(unique=True)
    follower_growth_pct: Mapped[float] = mapped_column(default=20.0)
    read_growth_pct: Mapped[float] = mapped_column(default=20.0)
    articles_100k: Mapped[int] = mapped_column(default=10)
    positive_reports: Mapped[int] = mapped_column(default=500)
    activities: Mapped[int] = mapped_column(default=80)
    livestreams: Mapped[int] = mapped_column(default=5)
    products: Mapped[int] = mapped_column(default=10)
    baseline_followers: Mapped[int | None]  # followers on 1 January (NULL: taken from the datacube)
    baseline_reads: Mapped[int | None]  # last year's reads (NULL: taken from the datacube)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    projects: Mapped[list[PlanProject]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="PlanProject.id"
    )


class PlanProject(db.Model):
    """A line of the publicity project calendar (宣传项目表): a project, its months and the department responsible."""

    __tablename__ = "stat_plan_project"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("stat_plan.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    months: Mapped[list[int]] = mapped_column(sa.JSON, default=list)  # 1..12
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(sa.String(256), default="")
    done: Mapped[bool] = mapped_column(default=False)

    plan: Mapped[AnnualPlan] = relationship(back_populates="projects")
    unit: Mapped[Unit | None] = relationship()


class RecordKind(enum.StrEnum):
    MEDIA_REPORT = "media_report"  # 外媒正面报道
    ACTIVITY = "activity"
    LIVESTREAM = "livestream"
    PRODUCT = "product"  # 新媒体产品

    @property
    def label(self) -> str:
        return {"media_report": "媒体报道", "activity": "活动", "livestream": "直播", "product": "新媒体产品"}[
            self.value
        ]


class PublicityRecord(db.Model):
    """What WeChat cannot count, entered by hand: a report in outside media, an activity, a livestream, a product."""

    __tablename__ = "stat_record"
    __table_args__ = (sa.Index("ix_stat_record_kind_day", "kind", "happened_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[RecordKind] = mapped_column(sa.Enum(RecordKind, native_enum=False, length=16))
    title: Mapped[str] = mapped_column(sa.String(200))
    outlet: Mapped[str] = mapped_column(sa.String(100), default="")  # media reports: the newspaper, site, station
    happened_on: Mapped[date] = mapped_column(sa.Date)
    link: Mapped[str] = mapped_column(sa.String(500), default="")
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"), index=True)
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    submit_key: Mapped[str] = mapped_column(sa.String(64), unique=True)  # a double submit records once
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    unit: Mapped[Unit | None] = relationship()


class ScoreWeight(db.Model):
    """The unit scoring scheme (外宣工作考核办法): points per unit of each metric; editable in the console."""

    __tablename__ = "stat_score_weight"

    metric: Mapped[str] = mapped_column(sa.String(48), primary_key=True)
    weight: Mapped[float]


class StatReport(db.Model):
    """A generated monthly or yearly report (the Excel workbook), kept so it can be listed and downloaded again."""

    __tablename__ = "stat_report"
    __table_args__ = (sa.UniqueConstraint("kind", "period_start", name="uq_stat_report_kind_period_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # "monthly" | "yearly"
    period_start: Mapped[date] = mapped_column(sa.Date)
    content: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(default=0)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    generated_by: Mapped[str] = mapped_column(sa.String(64), default="")  # a name, or "定时任务"
