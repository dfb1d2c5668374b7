"""Community contact points (城管执法社区工作室 / 社区联络点) published to citizens."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from models.staff import Unit
from server.extensions import db

__all__ = ["ContactPoint"]


class ContactPoint(db.Model):
    """A place citizens can walk into; its phone is an office line, not personal data."""

    __tablename__ = "contact_point"
    __table_args__ = (
        sa.CheckConstraint("latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180", name="position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    address: Mapped[str] = mapped_column(sa.String(200))
    latitude: Mapped[float]  # WGS-84, as phones report it
    longitude: Mapped[float]
    hours: Mapped[str] = mapped_column(sa.String(100), default="")
    phone: Mapped[str] = mapped_column(sa.String(32), default="")
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"), index=True)
    published: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    unit: Mapped[Unit | None] = relationship()
