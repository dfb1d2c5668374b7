"""Open311 GeoReport v2: API keys issued to partner systems (12345 hotline, civic apps) that file tips."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, utcnow
from server.extensions import db

__all__ = ["Open311Key"]


class Open311Key(db.Model):
    """A partner's key. Only its SHA-256 is stored: the key itself is shown once, when it is issued."""

    __tablename__ = "open311_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique for ever (revoked keys keep theirs): tips filed with the key are "open311:<name>".
    name: Mapped[str] = mapped_column(sa.String(40), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # hex SHA-256 of the key
    organisation: Mapped[str] = mapped_column(sa.String(100))  # the partner unit, e.g. 市12345热线
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def openid(self) -> str:
        return f"open311:{self.name}"
