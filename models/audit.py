from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigIntPK, UTCDateTime, utcnow
from server.extensions import db


class AuditKind(enum.StrEnum):
    CHANGE = "change"
    PII_VIEW = "pii_view"  # personal data shown unmasked
    EXPORT = "export"
    LOGIN = "login"


class AuditLog(db.Model):
    """Append-only: who did what, when, to which object, with the state before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    staff_name: Mapped[str | None] = mapped_column(sa.String(64))  # kept if the account goes
    kind: Mapped[AuditKind] = mapped_column(sa.Enum(AuditKind, native_enum=False, length=16))
    action: Mapped[str] = mapped_column(sa.String(64))  # e.g. menu.publish, rule.update, follower.export
    target_type: Mapped[str | None] = mapped_column(sa.String(32))
    target_id: Mapped[str | None] = mapped_column(sa.String(64))
    before: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    after: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    note: Mapped[str | None] = mapped_column(sa.String(256))
