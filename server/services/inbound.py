"""The message log: every message and event WeChat delivered, recorded once (the dedupe key is unique)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import InboundMessage, SiteSetting
from server.extensions import db

_ENVELOPE = {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "EventKey"}


def row_for(data: dict[str, Any], dedupe_key: str) -> dict[str, Any]:
    """The log row of a delivery, as column values (written in batches by server.wechat.msglog)."""
    event = data.get("Event")
    event_key = data.get("EventKey")
    return {
        "dedupe_key": dedupe_key,
        "openid": data["FromUserName"],
        "msg_type": str(data["MsgType"]).lower()[:32],
        "event": str(event).lower()[:64] if event else None,
        "event_key": event_key[:256] if isinstance(event_key, str) else None,
        # an EventKey beyond its column (a long VIEW URL) is kept whole in the payload too
        "payload": {k: v for k, v in data.items() if k not in _ENVELOPE or (k == "EventKey" and len(str(v)) > 256)},
        "sent_at": datetime.fromtimestamp(int(data["CreateTime"]), UTC),
    }


def stored_reply(dedupe_key: str) -> str | None:
    return db.session.scalar(sa.select(InboundMessage.reply).filter_by(dedupe_key=dedupe_key))


CLEARED_BEFORE = "retention.messages_cleared_before"  # site_setting: how far a finished run has cleared


def forget_contents(before: datetime, batch: int = 5000) -> int:
    """What followers wrote (a phone number typed in chat, an address, a location) is kept no longer than the
    retention: older rows keep who, what kind of message and when, which the statistics count, and lose the content
    and our reply. In batches, each its own commit, so the log is never locked for long. Returns the rows cleared.

    A run looks only at rows since the last finished run (less a day), not at the years already cleared; a run that
    never finished, or a job that stopped for weeks, still leaves nothing behind."""
    keeps_content = sa.or_(InboundMessage.reply.is_not(None), sa.cast(InboundMessage.payload, sa.Text) != "{}")
    where = [InboundMessage.received_at < before, keeps_content]
    mark = db.session.get(SiteSetting, CLEARED_BEFORE)
    if mark is not None:
        where.append(InboundMessage.received_at >= datetime.fromisoformat(mark.value) - timedelta(days=1))
    total = 0
    while True:
        ids = sa.select(InboundMessage.id).where(*where).limit(batch)
        cleared = db.session.execute(
            sa.update(InboundMessage)
            .where(InboundMessage.id.in_(ids.scalar_subquery()))
            .values(payload={}, reply=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        total += cleared
        if cleared < batch:
            break
    mark = db.session.get(SiteSetting, CLEARED_BEFORE, with_for_update=True)
    if mark is None:
        db.session.add(SiteSetting(key=CLEARED_BEFORE, value=before.isoformat()))
    elif datetime.fromisoformat(mark.value) < before:  # a shortened retention never moves it back
        mark.value = before.isoformat()
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent first run stored its mark: as good as ours
        db.session.rollback()
    return total
