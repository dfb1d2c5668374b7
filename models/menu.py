from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, utcnow
from server.extensions import db


class MenuKind(enum.StrEnum):
    DEFAULT = "default"
    CONDITIONAL = "conditional"  # 个性化菜单, e.g. for the 一线队员 tag


class MenuVersion(db.Model):
    """A custom menu as edited and as published; every published version is kept and can be restored."""

    __tablename__ = "menu_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[MenuKind] = mapped_column(sa.Enum(MenuKind, native_enum=False, length=16))
    name: Mapped[str] = mapped_column(sa.String(64), default="")  # conditional: which audience, for the editors
    buttons: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)  # WeChat's "button" array
    matchrule: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    source: Mapped[str] = mapped_column(sa.String(16), default="console")  # console | pulled | restored
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    wechat_menuid: Mapped[str | None] = mapped_column(sa.String(32))  # conditional menus get an id from WeChat
