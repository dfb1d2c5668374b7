"""Urgent-opinion alerts (舆情): sensitive terms, the alerts they raise, who is on duty, and the notices sent."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from models.staff import Staff
from server.extensions import db

__all__ = ["Alert", "AlertDuty", "AlertNotice", "AlertStatus", "NoticeRound", "SensitiveTerm"]


class SensitiveTerm(db.Model):
    """A term editors maintain; the enabled ones are compiled into one Aho–Corasick automaton per process."""

    __tablename__ = "sensitive_term"
    __table_args__ = (sa.CheckConstraint("weight BETWEEN 1 AND 100", name="weight"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    term: Mapped[str] = mapped_column(sa.String(32), unique=True)  # stored normalised (NFKC, lower case, no spaces)
    weight: Mapped[int] = mapped_column(default=1)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AlertStatus(enum.StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return {"new": "待确认", "acknowledged": "已确认", "closed": "已办结"}[self.value]


class Alert(db.Model):
    """A message or tip whose sensitive terms reached the threshold; one per (source, ref), so retries add none."""

    __tablename__ = "alert"
    __table_args__ = (
        sa.UniqueConstraint("source", "ref", name="uq_alert_source_ref"),
        sa.Index("ix_alert_status_created_at", "status", "created_at"),  # the SLA sweep and the open list
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(16))  # message | tip
    ref: Mapped[str] = mapped_column(sa.String(64))  # MsgId, tip tracking number, or a hash of the text
    openid: Mapped[str] = mapped_column(sa.String(64), index=True)
    excerpt: Mapped[str] = mapped_column(sa.String(500))
    terms: Mapped[list[str]] = mapped_column(sa.JSON)
    score: Mapped[int]
    status: Mapped[AlertStatus] = mapped_column(
        sa.Enum(AlertStatus, native_enum=False, length=16), default=AlertStatus.NEW
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    acknowledged_by_name: Mapped[str | None] = mapped_column(sa.String(64))  # kept if the account goes
    note: Mapped[str | None] = mapped_column(sa.String(500))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the duty notices went out (or were tried)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # claimed once by the SLA sweep

    acknowledged_by: Mapped[Staff | None] = relationship()
    notices: Mapped[list[AlertNotice]] = relationship(order_by="AlertNotice.id", cascade="all, delete-orphan")

    @property
    def source_label(self) -> str:
        return {"message": "公众号消息", "tip": "违法线索"}.get(self.source, self.source)


class AlertDuty(db.Model):
    """The duty roster: staff who receive a template message for every new alert."""

    __tablename__ = "alert_duty"

    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    staff: Mapped[Staff] = relationship()


class NoticeRound(enum.StrEnum):
    DUTY = "duty"  # at once, to the duty roster
    ESCALATION = "escalation"  # past the SLA, to B posts and admins

    @property
    def label(self) -> str:
        return {"duty": "值班通知", "escalation": "超时升级"}[self.value]


class AlertNotice(db.Model):
    """One template message per alert, round and recipient: a retried task skips those already sent."""

    __tablename__ = "alert_notice"
    __table_args__ = (sa.UniqueConstraint("alert_id", "round", "staff_id", name="uq_alert_notice_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    round: Mapped[NoticeRound] = mapped_column(sa.Enum(NoticeRound, native_enum=False, length=16))
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"))
    staff_name: Mapped[str] = mapped_column(sa.String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Each attempt claims the row (attempts + 1, next_attempt_at as a lease), so two runs never send the same
    # notice; a failure sets the backoff; attempts at MAX_NOTICE_ATTEMPTS means given up (or a permanent error).
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
