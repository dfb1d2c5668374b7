from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, utcnow
from server.extensions import db


class Follower(db.Model):
    """A WeChat user of the account, known by openid (WeChat no longer gives names or avatars)."""

    __tablename__ = "follower"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    subscribed: Mapped[bool] = mapped_column(default=True)
    subscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the latest (re)subscribe
    first_subscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source_scene: Mapped[str | None] = mapped_column(sa.String(64), index=True)  # qrscene_<x> that brought them
    last_scene: Mapped[str | None] = mapped_column(sa.String(64))  # latest SCAN
    remark: Mapped[str | None] = mapped_column(sa.String(30))
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    location_precision: Mapped[float | None]
    located_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # The follower list's order (latest subscribers first), so a page reads 50 index entries, not a sort of all.
        # PostgreSQL only: SQLite (the demo) takes no NULLS LAST in an index
        sa.Index("ix_follower_recent", subscribed_at.desc().nulls_last(), id.desc()).ddl_if(dialect="postgresql"),
        sa.Index("ix_follower_first_subscribed", "first_subscribed_at"),  # new followers per day (dashboard)
    )
