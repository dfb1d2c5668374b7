"""Events (活动): the 7·15 open day, "微访城市管理" visits and livestreams, with sessions, registrations and notices.

Quota rule: `EventSession.taken` counts the places held by confirmed and offered registrations (companions
included). It only ever moves by a conditional UPDATE in the same transaction as the registration's status change,
and a CHECK keeps it within the quota: PostgreSQL is the authority, Redis only a pre-filter rebuilt from it.
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import BigIntPK, UTCDateTime, utcnow
from server.extensions import db

__all__ = [
    "Event",
    "EventKind",
    "EventNotice",
    "EventNoticeKind",
    "EventNoticeState",
    "EventSession",
    "Registration",
    "RegistrationStatus",
]

# Fields an event may ask for; name/phone/id_number are personal data, stored encrypted.
FIELD_LABELS = {"name": "姓名", "phone": "手机号", "id_number": "身份证号"}


class EventKind(enum.StrEnum):
    OFFLINE = "offline"  # on site, checked in by QR code
    LIVESTREAM = "livestream"  # reservation and a reminder when it starts

    @property
    def label(self) -> str:
        return {"offline": "线下活动", "livestream": "直播"}[self.value]


class Event(db.Model):
    __tablename__ = "event"
    __table_args__ = (
        sa.CheckConstraint("registration_closes_at > registration_opens_at", name="window"),
        sa.CheckConstraint("max_companions >= 0 AND max_companions <= 10", name="companions"),
        sa.CheckConstraint("hold_minutes >= 1", name="hold"),
        sa.CheckConstraint("retention_days >= 1", name="retention"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[EventKind] = mapped_column(sa.Enum(EventKind, native_enum=False, length=16))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    registration_opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    registration_closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    max_companions: Mapped[int] = mapped_column(default=0)  # per registration, each takes a place
    required_fields: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # subset of FIELD_LABELS
    questions: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # free questions, answered in text
    hold_minutes: Mapped[int] = mapped_column(default=120)  # how long an offered place waits for its confirmation
    retention_days: Mapped[int] = mapped_column(default=30)  # personal data kept this long after the last session
    published: Mapped[bool] = mapped_column(default=False)
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sessions: Mapped[list[EventSession]] = relationship(
        back_populates="event", order_by="EventSession.starts_at, EventSession.id", cascade="all, delete-orphan"
    )

    def registration_open(self, at: datetime) -> bool:
        return self.registration_opens_at <= at < self.registration_closes_at


class EventSession(db.Model):
    """One date and time slot of an event, at a venue or on a livestream, with its own quota."""

    __tablename__ = "event_session"
    __table_args__ = (
        sa.CheckConstraint("taken >= 0 AND taken <= quota", name="taken"),
        sa.CheckConstraint("ends_at > starts_at", name="period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("event.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    venue: Mapped[str] = mapped_column(sa.String(128), default="")
    stream_url: Mapped[str] = mapped_column(sa.String(512), default="")
    quota: Mapped[int] = mapped_column()
    taken: Mapped[int] = mapped_column(default=0)  # places held (confirmed + offered), companions included
    # Bumped when the time or place changes: registrants hear of it, and reminders go again for the new time.
    revision: Mapped[int] = mapped_column(default=0, server_default="0")
    # Called off by the bureau: every registration is cancelled and told why; nobody can register any more.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")

    event: Mapped[Event] = relationship(back_populates="sessions")

    @property
    def left(self) -> int:
        return max(self.quota - self.taken, 0)


class RegistrationStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    WAITING = "waiting"  # on the waiting list, in id order
    OFFERED = "offered"  # a freed place is held for them until hold_expires_at
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # an offer not confirmed in time

    @property
    def label(self) -> str:
        return {
            "confirmed": "报名成功",
            "waiting": "候补中",
            "offered": "候补到位，待确认",
            "cancelled": "已取消",
            "expired": "候补已过期",
        }[self.value]


# Statuses that count as "this person has a registration for this event" (one per event per openid).
ACTIVE_STATUSES = ("CONFIRMED", "WAITING", "OFFERED")


class Registration(db.Model):
    __tablename__ = "registration"
    __table_args__ = (
        # One live registration per event per openid: a double tap meets this index, not a read-then-write check.
        sa.Index(
            "uq_registration_event_openid_active",
            "event_id",
            "openid",
            unique=True,
            postgresql_where=sa.text("status IN ('CONFIRMED', 'WAITING', 'OFFERED')"),
            sqlite_where=sa.text("status IN ('CONFIRMED', 'WAITING', 'OFFERED')"),
        ),
        sa.Index("ix_registration_session_status", "session_id", "status", "id"),
        sa.CheckConstraint("companions >= 0", name="companions"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("event.id", ondelete="CASCADE"))
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("event_session.id", ondelete="CASCADE"))
    openid: Mapped[str | None] = mapped_column(sa.String(64), index=True)  # None: a walk-in, or anonymised
    status: Mapped[RegistrationStatus] = mapped_column(sa.Enum(RegistrationStatus, native_enum=False, length=16))
    companions: Mapped[int] = mapped_column(default=0)
    name_enc: Mapped[str | None] = mapped_column(sa.Text)  # Fernet tokens under PII_KEY
    phone_enc: Mapped[str | None] = mapped_column(sa.Text)
    id_number_enc: Mapped[str | None] = mapped_column(sa.Text)
    answers: Mapped[list[str] | None] = mapped_column(sa.JSON)
    ticket: Mapped[str] = mapped_column(sa.String(16))  # random, signed into the QR token
    walk_in: Mapped[bool] = mapped_column(default=False)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkin_nonce: Mapped[str | None] = mapped_column(
        sa.String(64)
    )  # the scan that checked in: its retry is not a reuse
    checked_in_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[Event] = relationship()
    session: Mapped[EventSession] = relationship()

    @property
    def party_size(self) -> int:
        return 1 + self.companions


class EventNoticeKind(enum.StrEnum):
    OFFER = "offer"  # a waiting-list place came free
    DAY_BEFORE = "day_before"
    HOUR_BEFORE = "hour_before"
    LIVE_START = "live_start"
    CHANGED = "changed"  # the session's time or place changed
    CALLED_OFF = "called_off"  # the bureau called the session off

    @property
    def label(self) -> str:
        return {
            "offer": "候补到位",
            "day_before": "前一天提醒",
            "hour_before": "开始前一小时",
            "live_start": "直播开始",
            "changed": "时间地点变更",
            "called_off": "场次取消",
        }[self.value]


class EventNoticeState(enum.StrEnum):
    PENDING = "pending"  # to be sent at next_attempt_at: just queued, or an earlier attempt failed
    SENDING = "sending"  # claimed by one worker at claimed_at
    SENT = "sent"
    FAILED = "failed"  # refused for good, out of attempts, or no longer worth sending

    @property
    def label(self) -> str:
        return {"pending": "待发送", "sending": "发送中", "sent": "已发送", "failed": "未发送"}[self.value]


class EventNotice(db.Model):
    """The outbox of template messages: one row per registration, kind and session revision (the unique key is the
    claim, so it goes once); a failed attempt leaves the row pending with a later next_attempt_at, for the minute job
    to retry."""

    __tablename__ = "event_notice"
    __table_args__ = (
        sa.UniqueConstraint("registration_id", "kind", "revision", name="uq_event_notice_registration_kind_revision"),
        sa.Index("ix_event_notice_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    registration_id: Mapped[int] = mapped_column(sa.ForeignKey("registration.id", ondelete="CASCADE"))
    kind: Mapped[EventNoticeKind] = mapped_column(sa.Enum(EventNoticeKind, native_enum=False, length=16))
    revision: Mapped[int] = mapped_column(default=0, server_default="0")  # of the session, when it was queued
    state: Mapped[EventNoticeState] = mapped_column(
        sa.Enum(EventNoticeState, native_enum=False, length=16), default=EventNoticeState.SENDING
    )
    error: Mapped[str | None] = mapped_column(sa.String(300))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    url: Mapped[str | None] = mapped_column(sa.String(512))  # the page it opens, when known at queue time
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
