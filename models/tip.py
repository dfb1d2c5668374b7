"""Violation tips (违法线索 / 随手拍): the tip, its photos, history, support (+1), chat drafts and the notice outbox.

Two state machines stay apart (as FixMyStreet keeps them): `Tip.status` is what the citizen sees; each
`TipNotice` has its own delivery state, so a failing WeChat call never holds up or rewinds a tip.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from models.staff import Unit
from server.extensions import db

__all__ = [
    "NoticeKind",
    "NoticeState",
    "PhotoState",
    "Tip",
    "TipBlock",
    "TipCategory",
    "TipDraft",
    "TipDraftState",
    "TipNotice",
    "TipPhoto",
    "TipSource",
    "TipStatus",
    "TipStatusChange",
    "TipSupport",
    "OPEN_TIP_STATUSES",
]


class TipStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"

    @property
    def label(self) -> str:
        return {
            "submitted": "已提交",
            "accepted": "已受理",
            "dispatched": "已派发",
            "in_progress": "处理中",
            "resolved": "已办结",
            "rejected": "不予受理",
            "duplicate": "重复",
        }[self.value]

    @property
    def is_open(self) -> bool:
        return self in OPEN_TIP_STATUSES


OPEN_TIP_STATUSES = frozenset({TipStatus.SUBMITTED, TipStatus.ACCEPTED, TipStatus.DISPATCHED, TipStatus.IN_PROGRESS})


class TipSource(enum.StrEnum):
    H5 = "h5"
    CHAT = "chat"
    OPEN311 = "open311"  # a partner system (12345 hotline, civic app) through /open311/v2

    @property
    def label(self) -> str:
        return {"h5": "网页表单", "chat": "公众号对话", "open311": "Open311 接口"}[self.value]


class TipCategory(db.Model):
    """A category citizens choose from; editors add, rename, reorder and retire them in the console."""

    __tablename__ = "tip_category"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    sort: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tip(db.Model):
    """A violation tip (违法线索) sent by a citizen, from the H5 form or assembled in chat."""

    __tablename__ = "tip"

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_no: Mapped[str] = mapped_column(sa.String(16), unique=True)  # 8 chars, shown XXXX-XXXX
    submit_key: Mapped[str] = mapped_column(sa.String(64), unique=True)  # a double submit meets this key
    openid: Mapped[str] = mapped_column(sa.String(64), index=True)
    source: Mapped[TipSource] = mapped_column(sa.Enum(TipSource, native_enum=False, length=16))
    # The category's name at filing time: renaming a category later does not rewrite what the citizen chose.
    category: Mapped[str] = mapped_column(sa.String(32))
    description: Mapped[str] = mapped_column(sa.Text)
    latitude: Mapped[float | None]  # WGS-84, as the phone reports it
    longitude: Mapped[float | None]
    address: Mapped[str | None] = mapped_column(sa.String(200))
    phone_enc: Mapped[str | None] = mapped_column(sa.Text)  # Fernet token under PII_KEY; None: anonymous
    status: Mapped[TipStatus] = mapped_column(
        sa.Enum(TipStatus, native_enum=False, length=16), default=TipStatus.SUBMITTED
    )
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # SLA clocks start here
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="RESTRICT"), index=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tip.id", ondelete="SET NULL"))
    support_count: Mapped[int] = mapped_column(default=0)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    unit: Mapped[Unit | None] = relationship()
    duplicate_of: Mapped[Tip | None] = relationship(remote_side=[id])
    photos: Mapped[list[TipPhoto]] = relationship(
        back_populates="tip", order_by="TipPhoto.position, TipPhoto.id", foreign_keys="TipPhoto.tip_id"
    )
    history: Mapped[list[TipStatusChange]] = relationship(
        back_populates="tip", order_by="TipStatusChange.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        sa.Index("ix_tip_status_category", "status", "category"),
        sa.Index("ix_tip_lat_lng", "latitude", "longitude"),  # the bounding-box prefilter of nearby searches
    )

    @property
    def display_no(self) -> str:
        return f"{self.tracking_no[:4]}-{self.tracking_no[4:]}"

    @property
    def status_label(self) -> str:
        return self.status.label


class PhotoState(enum.StrEnum):
    PENDING = "pending"  # a chat photo waiting for its download
    READY = "ready"
    FAILED = "failed"


class TipPhoto(db.Model):
    """One photo: the original bytes kept for evidence (with their SHA-256), a public copy without EXIF, a thumbnail.

    A chat photo belongs to its draft first and to the tip once the draft is submitted.
    """

    __tablename__ = "tip_photo"

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tip.id", ondelete="CASCADE"), index=True)
    draft_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tip_draft.id", ondelete="SET NULL"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    key: Mapped[str] = mapped_column(sa.String(32), unique=True)  # random file name of the derived copies
    media_id: Mapped[str | None] = mapped_column(sa.String(128))  # WeChat temporary media (chat photos)
    state: Mapped[PhotoState] = mapped_column(
        sa.Enum(PhotoState, native_enum=False, length=16), default=PhotoState.PENDING
    )
    error: Mapped[str | None] = mapped_column(sa.String(200))
    original_path: Mapped[str | None] = mapped_column(sa.String(200))  # relative to MEDIA_ROOT
    original_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    original_size: Mapped[int | None]
    original_mime: Mapped[str | None] = mapped_column(sa.String(32))
    width: Mapped[int | None]
    height: Mapped[int | None]
    redacted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tip: Mapped[Tip | None] = relationship(back_populates="photos", foreign_keys=[tip_id])

    @property
    def public_path(self) -> str:
        return f"tips/public/{self.key[:2]}/{self.key}.jpg"

    @property
    def thumb_path(self) -> str:
        return f"tips/thumb/{self.key[:2]}/{self.key}.jpg"


class TipStatusChange(db.Model):
    """The tip's public history: every transition, who made it, when, and the note the citizen may read."""

    __tablename__ = "tip_status_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(sa.ForeignKey("tip.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[TipStatus | None] = mapped_column(sa.Enum(TipStatus, native_enum=False, length=16))
    to_status: Mapped[TipStatus] = mapped_column(sa.Enum(TipStatus, native_enum=False, length=16))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    staff_name: Mapped[str | None] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tip: Mapped[Tip] = relationship(back_populates="history")
    unit: Mapped[Unit | None] = relationship()


class TipSupport(db.Model):
    """A "+1" from another citizen instead of a second tip; one per openid per tip (the unique key decides)."""

    __tablename__ = "tip_support"

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(sa.ForeignKey("tip.id", ondelete="CASCADE"))
    openid: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("tip_id", "openid", name="uq_tip_support_tip_id_openid"),)


class TipDraftState(enum.StrEnum):
    OPEN = "open"
    SUBMITTED = "submitted"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class TipDraft(db.Model):
    """A tip being assembled in chat (photos, a location, a text); kept in the database so nothing sent is lost."""

    __tablename__ = "tip_draft"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(sa.String(64), index=True)
    state: Mapped[TipDraftState] = mapped_column(
        sa.Enum(TipDraftState, native_enum=False, length=16), default=TipDraftState.OPEN
    )
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    address: Mapped[str | None] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tip_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tip.id", ondelete="SET NULL"))

    photos: Mapped[list[TipPhoto]] = relationship(order_by="TipPhoto.position, TipPhoto.id")

    __table_args__ = (
        # One open draft per citizen, even when two photo messages arrive at once.
        sa.Index(
            "uq_tip_draft_open_openid",
            "openid",
            unique=True,
            postgresql_where=sa.text("state = 'OPEN'"),
            sqlite_where=sa.text("state = 'OPEN'"),
        ),
    )


class NoticeKind(enum.StrEnum):
    CITIZEN = "citizen"  # a template message to the citizen who filed the tip
    UNIT = "unit"  # a dispatch request to the unit's post A (B while A is away)


class NoticeState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {"pending": "待发送", "sending": "发送中", "sent": "已发送", "failed": "发送失败"}[self.value]


class TipNotice(db.Model):
    """The outbox: one row per notice to send; workers claim rows (SKIP LOCKED), so each is sent at most once."""

    __tablename__ = "tip_notice"

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(sa.ForeignKey("tip.id", ondelete="CASCADE"), index=True)
    kind: Mapped[NoticeKind] = mapped_column(sa.Enum(NoticeKind, native_enum=False, length=16))
    dedupe_key: Mapped[str] = mapped_column(sa.String(96), unique=True)  # one notice per transition and recipient
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # template_id, data, url (recipient resolved at send)
    state: Mapped[NoticeState] = mapped_column(
        sa.Enum(NoticeState, native_enum=False, length=16), default=NoticeState.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    recipient: Mapped[str | None] = mapped_column(sa.String(64))  # the openid it went to
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_tip_notice_state_next", "state", "next_attempt_at"),)


class TipBlock(db.Model):
    """A citizen whose tips are refused (abuse); editors add and lift blocks in the console."""

    __tablename__ = "tip_block"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    reason: Mapped[str] = mapped_column(sa.String(200))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
