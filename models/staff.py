from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from server.extensions import db


class UnitKind(enum.StrEnum):
    DEPARTMENT = "department"  # 市局处室
    DISTRICT = "district"  # 区局/分局
    SQUAD = "squad"  # 中队

    @property
    def label(self) -> str:
        return {"department": "市局处室", "district": "区局/分局", "squad": "中队"}[self.value]


class Role(enum.StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"  # 编辑
    REVIEWER = "reviewer"  # 审核
    LIAISON = "liaison"  # 宣传联络员: their own unit only
    OFFICER = "officer"  # 一线队员: uploads only

    @property
    def label(self) -> str:
        return {
            "admin": "管理员",
            "editor": "编辑",
            "reviewer": "审核",
            "liaison": "宣传联络员",
            "officer": "一线队员",
        }[self.value]


class Unit(db.Model):
    """An organisational unit; units form a tree (市局 → 区局 → 中队)."""

    __tablename__ = "unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[UnitKind] = mapped_column(sa.Enum(UnitKind, native_enum=False, length=16))
    parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="RESTRICT"), index=True)
    sort: Mapped[int] = mapped_column(default=0)
    # AB岗: requests go to A, to B when A is away or has not acted in time
    post_a_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", use_alter=True, ondelete="SET NULL"))
    post_b_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", use_alter=True, ondelete="SET NULL"))

    parent: Mapped[Unit | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Unit]] = relationship(back_populates="parent", order_by="Unit.sort")
    post_a: Mapped[Staff | None] = relationship(foreign_keys=[post_a_id], post_update=True)
    post_b: Mapped[Staff | None] = relationship(foreign_keys=[post_b_id], post_update=True)


class Staff(UserMixin, db.Model):
    """A console user or a field officer; officers may have no password and only a bound WeChat openid."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="RESTRICT"), index=True)
    role: Mapped[Role] = mapped_column(sa.Enum(Role, native_enum=False, length=16))
    phone_enc: Mapped[str | None] = mapped_column(sa.Text)  # Fernet token under PII_KEY
    openid: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(256))
    must_change_password: Mapped[bool] = mapped_column(default=True)
    # Bumped by "log out everywhere" and password changes: older session cookies stop working.
    session_version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)
    away: Mapped[bool] = mapped_column(default=False)  # AB岗: A is away, B takes the requests
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    unit: Mapped[Unit | None] = relationship(foreign_keys=[unit_id])

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active


class BindingCode(db.Model):
    """A one-time code (and parametric QR, scene bind_<token>) that binds a staff member's WeChat to their account."""

    __tablename__ = "binding_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(sa.String(32), unique=True)
    code: Mapped[str] = mapped_column(sa.String(8), unique=True)  # typed in chat: short, read aloud easily
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    qr_ticket: Mapped[str | None] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    staff: Mapped[Staff] = relationship(foreign_keys=[staff_id])
