"""Channel QR codes (渠道二维码): a named permanent scene, optionally answered by a reply rule of its own."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from models.reply import ReplyRule
from models.staff import Unit
from server.extensions import db

__all__ = ["Channel"]


class Channel(db.Model):
    """A parametric QR code for one place or poster; followers it brings keep its scene as their source_scene."""

    __tablename__ = "channel"
    __table_args__ = (
        # bind_<token> scenes belong to staff binding (handlers route them by prefix); substr, not LIKE: "_" is a
        # LIKE wildcard
        sa.CheckConstraint("substr(scene, 1, 5) <> 'bind_'", name="not_binding"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    scene: Mapped[str] = mapped_column(sa.String(64), unique=True)  # WeChat's scene_str: 1-64 characters
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"), index=True)
    # The channel's reply (match type "scene", pattern = scene); none: a SCAN gets no reply, a subscribe the welcome.
    reply_rule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reply_rule.id", ondelete="SET NULL"), unique=True)
    # From qrcode/create; empty while the code is pending (WeChat refused or was unreachable: retried from the page).
    qr_ticket: Mapped[str | None] = mapped_column(sa.String(256))
    qr_url: Mapped[str | None] = mapped_column(sa.String(256))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    unit: Mapped[Unit | None] = relationship()
    reply_rule: Mapped[ReplyRule | None] = relationship()
