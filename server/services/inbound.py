"""The message log: every message and event WeChat delivered, recorded once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import InboundMessage, MessageStatus
from server.extensions import db

_ENVELOPE = {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "EventKey"}


class Duplicate(Exception):
    """The dedupe key is already in the log: another copy of this delivery got there first."""


def record(data: dict[str, Any], dedupe_key: str) -> InboundMessage:
    """Insert the log row and flush, so a concurrent copy blocks on the unique key until we commit."""
    event = data.get("Event")
    event_key = data.get("EventKey")
    row = InboundMessage(
        dedupe_key=dedupe_key,
        openid=data["FromUserName"],
        msg_type=str(data["MsgType"]).lower()[:32],
        event=str(event).lower()[:64] if event else None,
        event_key=event_key[:256] if isinstance(event_key, str) else None,
        payload={k: v for k, v in data.items() if k not in _ENVELOPE},
        sent_at=datetime.fromtimestamp(int(data["CreateTime"]), UTC),
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Duplicate(dedupe_key) from None
    return row


def finish(row: InboundMessage, reply: str, status: MessageStatus) -> None:
    row.reply, row.status = reply, status
    db.session.add(row)  # the handler may have committed and expunged nothing; re-adding is a no-op then
    db.session.commit()


def stored_reply(dedupe_key: str) -> str | None:
    return db.session.scalar(sa.select(InboundMessage.reply).filter_by(dedupe_key=dedupe_key))
