"""Channel QR codes (渠道二维码): a named permanent scene per poster or place, its reply, its QR and its figures.

A channel is saved first and its QR requested after the commit: when WeChat refuses or is unreachable the channel
stays, marked pending, and the page retries. Permanent codes never expire and any QR of a scene scans as that scene,
so a retry loses nothing. The QR image is drawn here from WeChat's `url` (mp.weixin.qq.com/showqrcode is not called).
"""

from __future__ import annotations

import io
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import qrcode
import requests
import sqlalchemy as sa
from qrcode.constants import ERROR_CORRECT_M
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from wechatpy.exceptions import WeChatClientException

from models import Channel, Follower, InboundMessage, MatchType, ReplyRule, ReplyType, Unit, utcnow
from server.extensions import db
from server.services import ServiceError, audit, replies
from server.services.binding import SCENE_PREFIX as BIND_PREFIX
from server.wechat.client import describe, get_client

log = logging.getLogger(__name__)

SCENE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME = 64
RECENT_DAYS = 30
SUBSCRIBE_PREFIX = "qrscene_"  # WeChat's EventKey of a scan-to-subscribe
FIELDS = ("name", "scene", "unit_id", "reply_rule_id", "qr_ticket", "qr_url")
NO_REPLY = ""  # reply type "none": a SCAN is not answered, a new follower gets the welcome alone


@dataclass(frozen=True)
class ReplyInput:
    """A channel's reply as typed: reply_type "" for none, else one of ReplyType with its fields."""

    reply_type: str = NO_REPLY
    text: str | None = None
    media_id: str | None = None
    articles: list[dict[str, Any]] | None = None


def new_scene() -> str:
    """A fresh scene for the form: offered before saving, so a double submit meets the unique scene."""
    return f"ch_{secrets.token_hex(5)}"


def check_scene(scene: str) -> str:
    scene = scene.strip()
    if not SCENE_RE.fullmatch(scene):
        raise ServiceError("场景值须为 1 到 64 个英文字母、数字、下划线或短横线（如 open_day_poster）")
    if scene.startswith(BIND_PREFIX):
        raise ServiceError(f"场景值不能以「{BIND_PREFIX}」开头：它留给人员微信绑定二维码使用")
    return scene


def _check_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_NAME:
        raise ServiceError(f"请填写渠道名称（不超过 {MAX_NAME} 个字），如「开放日现场海报」")
    return name


def _check_unit(unit_id: int | None) -> int | None:
    if unit_id is not None and db.session.get(Unit, unit_id) is None:
        raise ServiceError("所选单位不存在，请重新选择")
    return unit_id


def _check_reply(reply: ReplyInput, scene: str) -> None:
    if reply.reply_type == NO_REPLY:
        return
    replies.validate_rule(MatchType.SCENE, scene, reply.reply_type, reply.text, reply.media_id, reply.articles)


def _stage_reply(channel: Channel, reply: ReplyInput) -> None:
    """The channel's scene rule created, changed or removed with the channel's own transaction (audited each)."""
    rule = channel.reply_rule
    if reply.reply_type == NO_REPLY:
        if rule is not None:
            channel.reply_rule = None
            replies.stage_delete_rule(rule)
        return
    kind = ReplyType(reply.reply_type)  # only the chosen type's fields are kept: no stale reply behind a switch
    channel.reply_rule = replies.stage_rule(
        name=f"渠道：{channel.name}",
        match_type=MatchType.SCENE,
        pattern=channel.scene,
        reply_type=kind,
        reply_text=reply.text if kind is ReplyType.TEXT else None,
        media_id=reply.media_id or None if kind is ReplyType.IMAGE else None,
        articles=reply.articles or None if kind is ReplyType.NEWS else None,
        rule=rule,
    )


def _taken(scene: str, name: str, created_by_id: int | None) -> Channel | None:
    """The channel a double submit of this form made (its scene is generated per page); another one's: refused."""
    taken = db.session.scalar(sa.select(Channel).filter_by(scene=scene))
    if taken is None:
        return None
    if taken.name == name and taken.created_by_id == created_by_id:
        return taken
    raise ServiceError(f"场景值「{scene}」已被渠道「{taken.name}」使用，请换一个")


def create_channel(
    *, name: str, scene: str, unit_id: int | None, reply: ReplyInput, created_by_id: int | None = None
) -> Channel:
    """Save a channel (and its reply), then ask WeChat for its permanent QR; see `request_qr` for a refusal."""
    name, scene, unit_id = _check_name(name), check_scene(scene), _check_unit(unit_id)
    _check_reply(reply, scene)
    if taken := _taken(scene, name, created_by_id):
        return taken
    channel = Channel(name=name, scene=scene, unit_id=unit_id, created_by_id=created_by_id)
    try:
        with db.session.begin_nested():  # two creates of one scene at once: the unique scene decides
            db.session.add(channel)
    except IntegrityError:
        if taken := _taken(scene, name, created_by_id):
            return taken
        raise ServiceError(f"场景值「{scene}」已被其他渠道使用，请换一个") from None
    _stage_reply(channel, reply)
    db.session.flush()  # reply_rule_id, for the audit entry
    audit.record("channel.create", target=channel, after=audit.snapshot(channel, FIELDS))
    db.session.commit()
    replies.rules_changed()
    return channel


def update_channel(channel: Channel, *, name: str, unit_id: int | None, reply: ReplyInput) -> Channel:
    """Rename, move to a unit, change the reply; the scene stays (it is printed in the QR)."""
    name, unit_id = _check_name(name), _check_unit(unit_id)
    _check_reply(reply, channel.scene)
    # Two saves at once (a double click adding a reply) go one after the other: the second sees the first's rule
    # instead of adding one more, which would be left unlinked and keep answering scans.
    db.session.refresh(channel, with_for_update=True)
    before = audit.snapshot(channel, FIELDS)
    channel.name, channel.unit_id = name, unit_id
    _stage_reply(channel, reply)
    db.session.flush()
    after = audit.snapshot(channel, FIELDS)
    if after != before:
        audit.record("channel.update", target=channel, before=before, after=after)
    db.session.commit()
    replies.rules_changed()
    return channel


def request_qr(channel: Channel) -> Channel:
    """Ask WeChat for the channel's permanent QR (QR_LIMIT_STR_SCENE) unless it has one; ServiceError if refused.

    The call holds no lock and writes nothing before it answers; two retries at once each get a code of the same
    scene, and either one stored is right."""
    if channel.qr_url:
        return channel
    try:
        result = get_client().qrcode.create(
            {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": channel.scene}}}
        )
    except WeChatClientException as exc:
        log.warning("qrcode/create refused for channel %s: %s", channel.id, exc.errcode)
        raise ServiceError(describe(exc)) from None  # the page says the QR was not made
    except requests.RequestException as exc:
        log.warning("qrcode/create unreachable for channel %s", channel.id, exc_info=True)
        raise ServiceError(describe(exc)) from None
    ticket, url = result.get("ticket"), result.get("url")
    if not isinstance(ticket, str) or not isinstance(url, str) or not url:
        log.warning("qrcode/create answered without ticket/url for channel %s", channel.id)
        raise ServiceError("微信的回答里没有二维码地址")
    channel.qr_ticket, channel.qr_url = ticket[:256], url[:256]
    audit.record("channel.qr", target=channel, after={"scene": channel.scene, "qr_url": channel.qr_url})
    db.session.commit()
    return channel


def qr_png(channel: Channel) -> bytes:
    """The QR as a PNG, large enough for a poster (20 px modules); error correction M survives some print wear."""
    if not channel.qr_url:
        raise ServiceError("二维码尚未生成")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=20, border=4)
    code.add_data(channel.qr_url)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()


# -- the list: followers brought and scans ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelRow:
    channel: Channel
    followers: int  # followers whose first subscribe came through this scene
    scans_recent: int  # SCAN + scan-to-subscribe events, last RECENT_DAYS days
    scans_total: int


def list_channels() -> list[ChannelRow]:
    """Every channel, newest first, with its figures: three grouped queries, whatever the number of channels."""
    channels = list(
        db.session.scalars(
            sa.select(Channel)
            .options(selectinload(Channel.unit), selectinload(Channel.reply_rule))
            .order_by(Channel.created_at.desc(), Channel.id.desc())
        )
    )
    if not channels:
        return []
    scenes = [c.scene for c in channels]
    brought = dict(
        db.session.execute(
            sa.select(Follower.source_scene, sa.func.count())
            .where(Follower.source_scene.in_(scenes))
            .group_by(Follower.source_scene)
        ).all()
    )
    since = utcnow() - timedelta(days=RECENT_DAYS)
    # The message log as WeChat delivered it: SCAN carries the scene, a scan-to-subscribe qrscene_<scene>.
    # Matching the partial index ix_inbound_message_scene (event IN ('scan', 'subscribe')).
    scene = sa.case(
        (InboundMessage.event == "subscribe", sa.func.substr(InboundMessage.event_key, len(SUBSCRIBE_PREFIX) + 1)),
        else_=InboundMessage.event_key,
    ).label("scene")
    subscribed = [SUBSCRIBE_PREFIX + s for s in scenes]
    counts = {
        row.scene: (int(row.recent), int(row.total))
        for row in db.session.execute(
            sa.select(
                scene,
                sa.func.count().filter(InboundMessage.received_at >= since).label("recent"),
                sa.func.count().label("total"),
            )
            .where(
                InboundMessage.event.in_(("scan", "subscribe")),
                InboundMessage.event_key.in_(scenes + subscribed),  # the index's key; the OR below pairs them
                sa.or_(
                    sa.and_(InboundMessage.event == "scan", InboundMessage.event_key.in_(scenes)),
                    sa.and_(
                        InboundMessage.event == "subscribe",
                        InboundMessage.event_key.in_(subscribed),
                    ),
                ),
            )
            .group_by(scene)
        )
    }
    return [
        ChannelRow(c, int(brought.get(c.scene, 0)), *counts.get(c.scene, (0, 0)))  # type: ignore[arg-type]
        for c in channels
    ]


def scene_names() -> dict[str, str]:
    """Scene → channel name, for pages that show scenes (followers)."""
    return dict(db.session.execute(sa.select(Channel.scene, Channel.name)).all())  # type: ignore[arg-type]


def reply_input(rule: ReplyRule | None) -> ReplyInput:
    if rule is None:
        return ReplyInput()
    return ReplyInput(rule.reply_type.value, rule.reply_text, rule.media_id, list(rule.articles or []))
