"""Material library (素材库): officers' photos from the scene, their processed renditions and WeChat uploads.

An item is one photo; near-duplicates share `group_id` (the id of the group's first item). Renditions are cached by
(item, recipe key); a WeChat upload is keyed by the processed file's SHA-256, so the same bytes go up once.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, utcnow
from models.staff import Staff, Unit
from server.extensions import db

__all__ = [
    "MaterialItem",
    "MaterialRendition",
    "MaterialSource",
    "MaterialState",
    "UPLOAD_STALE",
    "UploadState",
    "WechatImage",
]


class MaterialSource(enum.StrEnum):
    CHAT = "chat"  # sent to the account in chat
    UPLOAD = "upload"  # the mobile upload page

    @property
    def label(self) -> str:
        return {"chat": "公众号对话", "upload": "上传页面"}[self.value]


class MaterialState(enum.StrEnum):
    PENDING = "pending"  # row written, bytes not yet downloaded or derived
    READY = "ready"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {"pending": "处理中", "ready": "可用", "failed": "失败"}[self.value]


class UploadState(enum.StrEnum):
    """A rendition's upload to WeChat as an editor asked for it; what WeChat gave back is in WechatImage."""

    QUEUED = "queued"  # its task is on its way, or waits to try again after a transient failure (upload_error)
    UPLOADING = "uploading"  # a worker is sending it
    UPLOADED = "uploaded"
    FAILED = "failed"  # refused by WeChat or out of retries; upload_error says why, an editor may retry

    @property
    def label(self) -> str:
        return {"queued": "排队中", "uploading": "上传中", "uploaded": "已上传", "failed": "失败"}[self.value]


# A task runs its last retry within about two minutes; a rendition queued or uploading for longer has lost its task
# (the broker down when queued, or flushed; a killed worker's comes back only after Redis's hour of visibility): an
# editor may queue it again. Whichever task comes second finds it settled and does nothing.
UPLOAD_STALE = timedelta(minutes=15)


class MaterialItem(db.Model):
    __tablename__ = "material_item"
    __table_args__ = (
        sa.UniqueConstraint("uploader_id", "sha256", name="uq_material_item_uploader_sha256"),
        sa.Index("ix_material_item_unit_received", "unit_id", "received_at"),
        sa.Index("ix_material_item_uploader_received", "uploader_id", "received_at"),
        # The lost-photo sweep (every minute) reads only the few photos that failed: not the whole library.
        sa.Index(
            "ix_material_item_failed_received",
            "received_at",
            postgresql_where=sa.text("state = 'FAILED'"),
            sqlite_where=sa.text("state = 'FAILED'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(96), unique=True)  # chat:<media_id> or upload:<client id>
    source: Mapped[MaterialSource] = mapped_column(sa.Enum(MaterialSource, native_enum=False, length=16))
    state: Mapped[MaterialState] = mapped_column(
        sa.Enum(MaterialState, native_enum=False, length=16), default=MaterialState.PENDING
    )
    error: Mapped[str | None] = mapped_column(sa.String(200))
    uploader_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="RESTRICT"))
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id", ondelete="SET NULL"))
    media_id: Mapped[str | None] = mapped_column(sa.String(128))  # WeChat temporary media (chat only)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))  # of the original bytes
    mime: Mapped[str | None] = mapped_column(sa.String(32))
    original_path: Mapped[str | None] = mapped_column(sa.String(200))
    public_path: Mapped[str | None] = mapped_column(sa.String(200))
    thumb_path: Mapped[str | None] = mapped_column(sa.String(200))
    width: Mapped[int | None]
    height: Mapped[int | None]
    phash: Mapped[str | None] = mapped_column(sa.String(16))  # 64-bit perceptual hash, hex
    group_id: Mapped[int | None] = mapped_column(index=True)  # first item of its near-duplicate group
    # Chat photos: the first photo of the scene they were captioned or placed with (the photos an officer sent since
    # the previous caption or place); None until a text or location is sent for them.
    scene_id: Mapped[int | None]
    caption: Mapped[str | None] = mapped_column(sa.String(500))
    latitude: Mapped[float | None] = mapped_column(sa.Double)
    longitude: Mapped[float | None] = mapped_column(sa.Double)
    address: Mapped[str | None] = mapped_column(sa.String(200))
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    starred: Mapped[bool] = mapped_column(default=False)
    used_in_article: Mapped[bool] = mapped_column(default=False)
    article_id: Mapped[int | None]  # the first article that used it (set by publishing)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    uploader: Mapped[Staff] = relationship(foreign_keys=[uploader_id])
    unit: Mapped[Unit | None] = relationship(foreign_keys=[unit_id])
    renditions: Mapped[list[MaterialRendition]] = relationship(
        back_populates="item", cascade="all, delete-orphan", order_by="MaterialRendition.id"
    )

    @property
    def has_point(self) -> bool:
        return self.latitude is not None and self.longitude is not None


class MaterialRendition(db.Model):
    """A processed copy (cover, thumbnail, in-article…): one per (item, recipe), reused when asked again."""

    __tablename__ = "material_rendition"
    __table_args__ = (sa.UniqueConstraint("item_id", "recipe_key", name="uq_material_rendition_item_recipe"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("material_item.id", ondelete="CASCADE"))
    recipe_key: Mapped[str] = mapped_column(sa.String(64))
    recipe: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    purpose: Mapped[str] = mapped_column(sa.String(16))
    path: Mapped[str] = mapped_column(sa.String(200))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    upload_state: Mapped[UploadState | None] = mapped_column(
        sa.Enum(UploadState, native_enum=False, length=16)
    )  # None: nobody asked for its upload (its bytes may be on WeChat all the same: WechatImage says)
    upload_error: Mapped[str | None] = mapped_column(sa.String(200))  # in Chinese, for the editor
    upload_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    item: Mapped[MaterialItem] = relationship(back_populates="renditions")

    def upload_stalled(self, now: datetime) -> bool:
        """Queued or uploading for longer than any task takes: its task was lost."""
        in_flight = self.upload_state in (UploadState.QUEUED, UploadState.UPLOADING)
        return in_flight and self.upload_state_at is not None and now - self.upload_state_at > UPLOAD_STALE


class WechatImage(db.Model):
    """A processed image uploaded to WeChat: the same bytes for the same kind of upload are sent once."""

    __tablename__ = "wechat_image"
    __table_args__ = (sa.UniqueConstraint("sha256", "kind", name="uq_wechat_image_sha256_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))  # image / thumb (material/add_material), uploadimg
    media_id: Mapped[str | None] = mapped_column(sa.String(128))
    url: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
