from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, utcnow
from server.extensions import db


class MatchType(enum.StrEnum):
    EXACT = "exact"
    CONTAINS = "contains"
    REGEX = "regex"
    CLICK = "click"  # a menu CLICK event; pattern holds the button's key
    SCENE = "scene"  # a channel QR's scene (SCAN, scan-to-subscribe); managed on the channel's page


class ReplyType(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    NEWS = "news"


class ReplyRule(db.Model):
    """An editor-managed auto-reply: the enabled rule with the highest priority that matches answers."""

    __tablename__ = "reply_rule"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    match_type: Mapped[MatchType] = mapped_column(sa.Enum(MatchType, native_enum=False, length=16))
    pattern: Mapped[str] = mapped_column(sa.String(256))
    priority: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    reply_type: Mapped[ReplyType] = mapped_column(
        sa.Enum(ReplyType, native_enum=False, length=16), default=ReplyType.TEXT
    )
    reply_text: Mapped[str | None] = mapped_column(sa.Text)
    media_id: Mapped[str | None] = mapped_column(sa.String(128))
    # [{title, description, image, url}], at most 8 (WeChat's limit for a news reply)
    articles: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (sa.Index("ix_reply_rule_match", "match_type", "enabled"),)


class SiteSetting(db.Model):
    """Small editor-managed values (welcome message, default reply) by key."""

    __tablename__ = "site_setting"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
