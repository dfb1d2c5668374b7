"""Officers told in chat of their photos that did not make it into the material library.

A chat photo can be refused (not an image, too large) or never downloaded (WeChat forgot it) after the chat has moved
on: the reply to a caption or place names the photos refused by then, and an officer who sent neither heard nothing.
Once the officer's burst is over (or at the latest NOTICE_LATEST after a lost photo), one customer-service text names
the lost photos not yet told and asks for them again. Each photo is told once, in that text or in such a reply: an
audit entry per photo (LOST_NOTICE) records how, or why it could not be, and is how a later run knows it was told.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from redis.exceptions import RedisError

from models import AuditLog, MaterialItem, MaterialSource, MaterialState, Staff, utcnow
from server.extensions import db, exclusive, get_redis
from server.filters import local_when
from server.services import audit, materials
from server.services.tips import CHAT_MEDIA_LIFETIME
from server.wechat.client import send_text

log = logging.getLogger(__name__)

LOST_NOTICE = "material.lost_notice"
audit.ACTION_LABELS[LOST_NOTICE] = "告知队员照片未存入素材库"
SENT, IN_REPLY, NOT_SENT = "已在微信告知", "已在回复中告知", "未能告知"
LOOKBACK = CHAT_MEDIA_LIFETIME + timedelta(days=1)  # a photo never downloaded is refused three days after it was sent
NOTICE_LATEST = timedelta(minutes=15)  # an officer sending photo after photo for an hour hears of the first by then
NOTICE_TRIES = 3  # sweeps that try again after WeChat was busy or out of reach
TRIES_KEY = "materials:lost-notice-tries:{}"  # uploader id → tries so far; losing it costs a few more tries at most
LISTED = 5  # photos named one per line; the rest are counted, so the text stays within WeChat's 2048 bytes
CAPTION_SHOWN = 20


def _told_ids(items: list[MaterialItem]) -> set[int]:
    stmt = sa.select(AuditLog.target_id).where(
        AuditLog.action == LOST_NOTICE,
        AuditLog.target_type == MaterialItem.__tablename__,
        AuditLog.target_id.in_([str(i.id) for i in items]),
    )
    return {int(i) for i in db.session.scalars(stmt)}


def told_in_reply(lost: list[MaterialItem]) -> None:
    """A reply to a caption or place named these lost photos: they are not told again. Joins the caller's commit."""
    told = _told_ids(lost) if lost else set()
    for item in lost:
        if item.id not in told:
            audit.record(LOST_NOTICE, target=item, after={"notice": IN_REPLY})


def _untold(now: datetime) -> list[Any]:
    """Chat photos sent within LOOKBACK that are not in the library, nor a copy of one that is, and not yet told."""
    told = sa.exists().where(
        AuditLog.action == LOST_NOTICE,
        AuditLog.target_type == MaterialItem.__tablename__,
        AuditLog.target_id == sa.cast(MaterialItem.id, sa.String(64)),
        AuditLog.at > now - LOOKBACK - timedelta(days=1),  # on the index of `at`: only recent entries are read
    )
    return [
        MaterialItem.source == MaterialSource.CHAT,
        MaterialItem.state == MaterialState.FAILED,
        MaterialItem.received_at > now - LOOKBACK,
        sa.or_(MaterialItem.error.is_(None), sa.not_(MaterialItem.error.startswith(materials.COPY_OF))),
        sa.not_(told),
    ]


def officers_due(now: datetime | None = None) -> list[int]:
    """Officers with lost photos not yet told whose burst is over (the next photo of a burst may be lost too: one
    text for all), or who have waited NOTICE_LATEST since the first of them."""
    now = now or utcnow()
    stmt = (
        sa.select(MaterialItem.uploader_id, sa.func.min(MaterialItem.received_at))
        .where(*_untold(now))
        .group_by(MaterialItem.uploader_id)
    )
    due = []
    for uploader_id, first in db.session.execute(stmt).all():
        last = db.session.scalar(
            sa.select(sa.func.max(MaterialItem.received_at)).where(
                MaterialItem.uploader_id == uploader_id, MaterialItem.source == MaterialSource.CHAT
            )
        )
        if last <= now - materials.PAIR_WINDOW or first <= now - NOTICE_LATEST:
            due.append(uploader_id)
    return due


def _captions(items: list[MaterialItem]) -> dict[int, str]:
    """item id → the caption the officer sent for its scene: a lost photo's caption went to the photos kept."""
    scenes = {i.scene_id for i in items if i.scene_id is not None}
    stmt = (
        sa.select(MaterialItem.scene_id, MaterialItem.caption)
        .where(MaterialItem.scene_id.in_(scenes), MaterialItem.caption.is_not(None))
        .order_by(MaterialItem.id)
    )
    found: dict[int, str] = {}
    for scene_id, caption in db.session.execute(stmt).all() if scenes else []:
        found.setdefault(scene_id, caption)
    out = {}
    for item in items:
        if caption := item.caption or found.get(item.scene_id or 0):
            out[item.id] = caption if len(caption) <= CAPTION_SHOWN else caption[:CAPTION_SHOWN] + "…"
    return out


def notice_text(items: list[MaterialItem]) -> str:
    """The text to the officer: which photos (when sent, their caption), why, and to send them again."""
    captions = _captions(items)

    def which(item: MaterialItem) -> str:
        caption = f"（说明：{captions[item.id]}）" if item.id in captions else ""
        return f"{local_when(item.received_at)} 发送的现场照片{caption}"

    if len(items) == 1:
        [item] = items
        return f"您{which(item)}未能存入素材库：{materials.why_lost(items)}。请重新发送这张照片。"
    lines = [f"您发送的 {len(items)} 张现场照片未能存入素材库："]
    lines += [f"{n}. {which(item)}：{materials.why_lost([item])}" for n, item in enumerate(items[:LISTED], 1)]
    if rest := items[LISTED:]:
        lines.append(f"另有 {len(rest)} 张：{materials.why_lost(rest)}")
    lines.append("请从手机相册中找到这些照片，重新发送给公众号。")
    return "\n".join(lines)


def _another_try(uploader_id: int) -> bool:
    key = TRIES_KEY.format(uploader_id)
    try:
        pipe = get_redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, 3600)
        tries = int(pipe.execute()[0])
    except RedisError:  # nothing to count with: recorded as not sent rather than tried for ever
        return False
    return tries < NOTICE_TRIES


def _forget_tries(uploader_id: int) -> None:
    try:
        get_redis().delete(TRIES_KEY.format(uploader_id))
    except RedisError:
        pass  # its TTL clears it


def tell_officer(uploader_id: int, now: datetime | None = None) -> bool:
    """One text to the officer about their lost photos not yet told. Returns whether it was settled (told, or found
    not to be possible): False when there was nothing to tell, or WeChat was busy and the next sweep tries again.
    Callers hold exclusive(f"lost-photos:{uploader_id}"): what the previous holder recorded is read here."""
    now = now or utcnow()
    stmt = sa.select(MaterialItem).where(*_untold(now), MaterialItem.uploader_id == uploader_id)
    items = list(db.session.scalars(stmt.order_by(MaterialItem.received_at, MaterialItem.id)))
    if not items:
        return False
    text = notice_text(items)
    officer = db.session.get(Staff, uploader_id)
    if officer is None or not officer.active or not officer.openid:
        error, retry = "队员已停用或未绑定微信", False
    else:
        error, retry = send_text(officer.openid, text)  # never raises: a refusal is recorded, not retried in a loop
    if error and retry and _another_try(uploader_id):
        log.info("lost photos of officer %s: notice not sent, tried again later: %s", uploader_id, error)
        db.session.rollback()
        return False
    outcome = {"notice": SENT, "text": text} if error is None else {"notice": NOT_SENT, "error": error}
    for item in items:
        audit.record(LOST_NOTICE, target=item, after=outcome)
    db.session.commit()
    _forget_tries(uploader_id)
    if error:
        log.info("lost photos of officer %s: %d not told: %s", uploader_id, len(items), error)
    return True


def tell_officers(now: datetime | None = None) -> int:
    """The sweep (every minute): each officer due is told once, even with sweeps overlapping. Returns how many."""
    now = now or utcnow()
    settled = 0
    for uploader_id in officers_due(now):
        with exclusive(f"lost-photos:{uploader_id}") as mine:  # another worker is telling them
            if mine and tell_officer(uploader_id, now):
                settled += 1
    return settled


def notice_states(items: list[MaterialItem]) -> dict[int, str]:
    """item id → whether the officer was told, for the console's list of photos not saved."""
    stmt = (
        sa.select(AuditLog.target_id, AuditLog.after)
        .where(
            AuditLog.action == LOST_NOTICE,
            AuditLog.target_type == MaterialItem.__tablename__,
            AuditLog.target_id.in_([str(i.id) for i in items]),
        )
        .order_by(AuditLog.id)
    )
    states: dict[int, str] = {}
    for target_id, after in db.session.execute(stmt).all() if items else []:
        after = after or {}
        states[int(target_id)] = after.get("notice", "") + (f"：{after['error']}" if after.get("error") else "")
    return states
