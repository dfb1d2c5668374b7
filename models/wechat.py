from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import BigIntPK, UTCDateTime, utcnow
from server.extensions import db


class MessageStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # the handler raised; the default reply went out
    TIMEOUT = "timeout"  # the handler overran its budget; the default reply went out


class InboundMessage(db.Model):
    """Every message and event WeChat delivered, once: the dedupe key is unique."""

    __tablename__ = "inbound_message"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # m:<MsgId>:<digest of the message> for messages; e:<sha1 of every field> for events (protocol.dedupe_key).
    dedupe_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    openid: Mapped[str] = mapped_column(sa.String(64))
    msg_type: Mapped[str] = mapped_column(sa.String(32))
    event: Mapped[str | None] = mapped_column(sa.String(64))
    event_key: Mapped[str | None] = mapped_column(sa.String(256))
    # The other fields WeChat sent (Content, MediaId, Location_X ...), for statistics and later processing.
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)  # WeChat's CreateTime
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    status: Mapped[MessageStatus] = mapped_column(
        sa.Enum(MessageStatus, native_enum=False, length=16), default=MessageStatus.OK
    )
    reply: Mapped[str | None] = mapped_column(sa.Text)  # the plaintext reply XML, or "success"

    __table_args__ = (
        sa.Index("ix_inbound_message_type_received", "msg_type", "event", "received_at"),
        # A follower's messages by time: their latest activity is read from the index alone (follower lists, export).
        sa.Index("ix_inbound_message_openid_received", "openid", "received_at"),
        # Scans per channel QR scene (SCAN: the scene; scan-to-subscribe: qrscene_<scene>), partial: other rows skip it
        sa.Index(
            "ix_inbound_message_scene",
            "event_key",
            "received_at",
            postgresql_where=sa.text("event IN ('scan', 'subscribe')"),
            sqlite_where=sa.text("event IN ('scan', 'subscribe')"),
        ),
    )
