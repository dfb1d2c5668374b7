"""Violation tips (违法线索 / 随手拍): filing (H5 form and chat), photos, support, lifecycle, notices, triage.

One service for both ways in: the H5 form calls `submit_tip`; the chat flow assembles a `TipDraft` from image,
location and text messages and files it through the same `_file_tip`. Rules that must hold under concurrency are
decided by the schema (unique submit_key, unique support, one open draft per openid) or by Redis atomically (quotas).
"""

from __future__ import annotations

import io
import logging
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException

from models import (
    OPEN_TIP_STATUSES,
    AuditKind,
    NoticeKind,
    NoticeState,
    PhotoState,
    Role,
    SiteSetting,
    Staff,
    Tip,
    TipBlock,
    TipCategory,
    TipDraft,
    TipDraftState,
    TipNotice,
    TipPhoto,
    TipSource,
    TipStatus,
    TipStatusChange,
    TipSupport,
    Unit,
    utcnow,
)
from server.extensions import db, get_redis
from server.filters import LOCAL_TZ, local_dt
from server.inputs import to_int
from server.services import ServiceError, alerts, audit, images, pii, sheets, targets
from server.services import staff as staff_service
from server.urls import public_url
from server.wechat.client import get_client, send_template

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES = ["违法建筑", "占道经营", "乱设摊", "渣土/扬尘", "犬类管理", "家禽", "市容环境", "其他"]
FALLBACK_CATEGORY = "其他"
# Words citizens use in chat that point to a category (besides the names and their "/" parts).
CATEGORY_HINTS = {
    "违法建筑": ("违建", "搭建", "加盖", "私搭"),
    "占道经营": ("占道",),
    "乱设摊": ("摆摊", "设摊", "地摊", "小摊"),
    "渣土/扬尘": ("渣土", "扬尘", "灰尘", "工地"),
    "犬类管理": ("狗", "犬"),
    "家禽": ("鸡", "鸭", "鹅"),
    "市容环境": ("垃圾", "市容", "小广告"),
}
DESCRIPTION_MIN, DESCRIPTION_MAX = 5, 1000
ADDRESS_MAX = 200
NOTE_MAX = 500
MAX_PHOTOS = 9
NEARBY_METERS = 250
EARTH_RADIUS_M = 6_371_000.0
TRACKING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed without mix-ups
TRACKING_LENGTH = 8  # 31^8 ≈ 8.5e11: numbers cannot be guessed to peek at other people's tips
CHAT_WINDOW = timedelta(minutes=10)
CANCEL_WORDS = ("取消", "取消举报")
SUBMIT_WORDS = ("提交", "提交举报")
CHAT_COMMANDS = CANCEL_WORDS + SUBMIT_WORDS  # words the chat flow itself answers
NOTHING_TO_CANCEL = "当前没有正在填写的随手拍举报，无需取消。发送现场照片即可开始举报。"
EXPIRY_TOLD_WITHIN = timedelta(hours=1)  # a text this soon after a draft lapsed is told so, once
DRAFT_KEY = "tips:draft:{}"
QUOTA_KEY = "tips:quota:{}:{}:{}"  # kind, who, local date
DEFAULT_DAILY_LIMIT_OPENID, DEFAULT_DAILY_LIMIT_IP = 10, 30
SLA_SETTING_KEY = "tip_sla_hours"
DEFAULT_SLA_HOURS = {"submitted": 24, "accepted": 24, "dispatched": 48, "in_progress": 72}
DEMO_TEMPLATE_STATUS = "demo-tip-status-template"
DEMO_TEMPLATE_DISPATCH = "demo-tip-dispatch-template"
NOTICE_MAX_ATTEMPTS = 6
NOTICE_STALE = timedelta(minutes=5)  # a "sending" row older than this was orphaned by a dead worker
# WeChat errors that no retry will fix: unknown openid, unsubscribed, bad template, bad data, refused.

LIMIT_REACHED = "今天提交的线索已达上限（每天 {} 条），请明天再来。紧急情况请拨打 12345 热线。"
BLOCKED = "很抱歉，您暂时无法通过公众号提交线索。如有疑问或紧急情况，请拨打 12345 热线。"
OFFICER_PHOTO = "已收到现场照片，素材功能即将上线"

audit.ACTION_LABELS.update(
    {
        "tip.accept": "受理线索",
        "tip.reject": "不予受理线索",
        "tip.duplicate": "标记重复线索",
        "tip.dispatch": "派发线索",
        "tip.start": "开始处理线索",
        "tip.resolve": "办结线索",
        "tip.export": "导出线索",
        "tip.phone_view": "查看线索联系电话",
        "tip.photo_original_view": "查看线索原图",
        "tip.photo_redact": "遮挡线索照片",
        "tip.category_save": "修改线索类别",
        "tip.block": "禁止提交线索",
        "tip.unblock": "解除禁止提交线索",
        "tip.sla_save": "修改线索时限",
    }
)


# -- small helpers ---------------------------------------------------------------------------------------------------


def _enqueue(task: Any, *args: Any) -> None:
    """After the commit. In eager mode (tests, demo) the task runs here: its failure must not undo the caller's work."""
    try:
        task.delay(*args)
    except Exception:  # noqa: BLE001  (logged; the row it works on keeps its state for the next try)
        log.exception("task %s failed when enqueued", getattr(task, "name", task))


def format_no(tracking_no: str) -> str:
    return f"{tracking_no[:4]}-{tracking_no[4:]}"


def normalise_no(text: str) -> str:
    return re.sub(r"[\s\-－—]", "", text or "").upper()


def _new_tracking_no() -> str:
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_LENGTH))


def _clean_text(value: str | None) -> str:
    return (value or "").replace("\r\n", "\n").strip()


def _limit(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


# -- categories ------------------------------------------------------------------------------------------------------


def _ensure_categories() -> None:
    """The defaults, the first time anyone asks (a fresh install, a demo): editors change them afterwards."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(TipCategory)):
        return
    for sort, name in enumerate(DEFAULT_CATEGORIES):
        try:
            with db.session.begin_nested():  # two first readers at once: the unique name decides
                db.session.add(TipCategory(name=name, sort=sort * 10))
        except IntegrityError:
            pass
    db.session.commit()


def categories(*, active_only: bool = True) -> list[TipCategory]:
    _ensure_categories()
    stmt = sa.select(TipCategory).order_by(TipCategory.sort, TipCategory.id)
    if active_only:
        stmt = stmt.where(TipCategory.active.is_(True))
    return list(db.session.scalars(stmt))


def category_names(*, active_only: bool = True) -> list[str]:
    return [c.name for c in categories(active_only=active_only)]


def save_category(*, name: str, sort: int = 0, active: bool = True, category: TipCategory | None = None) -> TipCategory:
    name = _clean_text(name)
    if not 1 <= len(name) <= 32:
        raise ServiceError("类别名称须为 1 到 32 个字")
    before = audit.snapshot(category, ("name", "sort", "active")) if category else None
    if category is None:
        category = TipCategory()
        db.session.add(category)
    category.name, category.sort, category.active = name, sort, active
    audit.record(
        "tip.category_save", target=category, before=before, after={"name": name, "sort": sort, "active": active}
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError(f"类别「{name}」已存在") from None
    return category


def category_from_text(text: str) -> str:
    """Chat: the category a citizen's words point to, 其他 when none does."""
    names = category_names()
    for name in names:
        parts = [name, *name.split("/"), *CATEGORY_HINTS.get(name, ())]
        if any(part and part in text for part in parts):
            return name
    return FALLBACK_CATEGORY if FALLBACK_CATEGORY in names or not names else names[-1]


# -- abuse control ---------------------------------------------------------------------------------------------------


def is_blocked(openid: str) -> bool:
    return db.session.scalar(sa.select(TipBlock.id).filter_by(openid=openid)) is not None


def block(openid: str, reason: str, *, by: Staff | None = None) -> TipBlock:
    openid, reason = _clean_text(openid), _clean_text(reason)
    if not 5 <= len(openid) <= 64:
        raise ServiceError("请填写正确的 openid")
    if not 2 <= len(reason) <= 200:
        raise ServiceError("请填写禁止原因（2 到 200 个字）")
    row = TipBlock(openid=openid, reason=reason, created_by_id=by.id if by else None)
    db.session.add(row)
    audit.record("tip.block", target_type="tip_block", target_id=openid, after={"reason": reason})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError("该用户已在禁止名单中") from None
    return row


def unblock(block_id: int) -> None:
    row = db.session.get(TipBlock, block_id)
    if row is None:
        raise ServiceError("记录不存在")
    audit.record("tip.unblock", target_type="tip_block", target_id=row.openid, before={"reason": row.reason})
    db.session.delete(row)
    db.session.commit()


def blocks() -> list[TipBlock]:
    return list(db.session.scalars(sa.select(TipBlock).order_by(TipBlock.created_at.desc())))


# INCR each key only when every key is under its limit: one round trip, atomic, so 50 concurrent submits
# from one openid take exactly the remaining quota and no more.
_QUOTA_LUA = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[#KEYS + 1])
end
return 0
"""


def _quota_keys(openid: str, ip: str | None) -> tuple[list[str], list[int]]:
    today = datetime.now(LOCAL_TZ).strftime("%Y%m%d")  # "a day" as citizens count it
    keys, limits = [QUOTA_KEY.format("openid", openid, today)], [_limit("TIP_DAILY_LIMIT", DEFAULT_DAILY_LIMIT_OPENID)]
    if ip:
        keys.append(QUOTA_KEY.format("ip", ip, today))
        limits.append(_limit("TIP_DAILY_LIMIT_IP", DEFAULT_DAILY_LIMIT_IP))
    return keys, limits


def _take_quota(openid: str, ip: str | None) -> list[str]:
    keys, limits = _quota_keys(openid, ip)
    try:
        over = int(get_redis().eval(_QUOTA_LUA, len(keys), *keys, *limits, 2 * 86400))
    except RedisError:  # Redis down: today's tips in the database are the count (not atomic; nothing to give back)
        over = _over_quota_in_rows(openid, ip, limits)
        keys = []
    if over:
        raise ServiceError(LIMIT_REACHED.format(limits[over - 1]))
    return keys


def _over_quota_in_rows(openid: str, ip: str | None, limits: list[int]) -> int:
    """As _QUOTA_LUA answers: the 1-based index of the first limit reached by today's tips, else 0."""
    midnight = datetime.now(LOCAL_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    filed = sa.select(sa.func.count()).select_from(Tip).where(Tip.created_at >= midnight)
    counts = [db.session.scalar(filed.where(Tip.openid == openid))]
    if ip:
        counts.append(db.session.scalar(filed.where(Tip.ip == ip)))
    return next((i for i, (n, limit) in enumerate(zip(counts, limits, strict=True), 1) if n >= limit), 0)


def _give_back_quota(keys: list[str]) -> None:
    """A submit that took quota but filed nothing (a double submit, a failure) returns it."""
    try:
        for key in keys:
            get_redis().decr(key)
    except Exception:  # noqa: BLE001  (Redis down: the citizen loses one of today's tips, nothing worse)
        log.warning("could not return tip quota")


# -- filing ----------------------------------------------------------------------------------------------------------


@dataclass
class Location:
    latitude: float | None
    longitude: float | None
    address: str | None

    @property
    def has_point(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def parse_location(latitude: Any, longitude: Any, address: Any) -> Location:
    """The phone's position (WGS-84) and/or a typed address; at least one of them."""
    lat = lng = None
    if str(latitude or "").strip() or str(longitude or "").strip():
        try:
            lat, lng = float(latitude), float(longitude)
        except (TypeError, ValueError):
            raise ServiceError("定位数据有误，请重新定位或填写地址") from None
        if not (-90 <= lat <= 90 and -180 <= lng <= 180) or not (math.isfinite(lat) and math.isfinite(lng)):
            raise ServiceError("定位数据有误，请重新定位或填写地址")
    text = _clean_text(address if isinstance(address, str) else None) or None
    if text is not None and not 2 <= len(text) <= ADDRESS_MAX:
        raise ServiceError(f"地址请填写 2 到 {ADDRESS_MAX} 个字")
    if lat is None and text is None:
        raise ServiceError("请获取当前位置，或填写事发地址")
    return Location(lat, lng, text)


def _check_description(description: str) -> str:
    description = _clean_text(description)
    if not DESCRIPTION_MIN <= len(description) <= DESCRIPTION_MAX:
        raise ServiceError(f"请用 {DESCRIPTION_MIN} 到 {DESCRIPTION_MAX} 个字描述情况")
    return description


def _check_phone(phone: str | None) -> str | None:
    phone = re.sub(r"[\s\-]", "", phone or "")
    if not phone:
        return None
    if not pii.valid_phone(phone):
        raise ServiceError("请填写 11 位手机号码，或留空匿名提交")
    return phone


def _store_files(photo: TipPhoto, processed: images.ProcessedImage) -> TipPhoto:
    """Write the files of one verified photo and note them on the row (which is not added to the session here)."""
    original = images.original_path_for(processed.sha256, processed.mime)
    images.write_media(original, processed.original)
    images.write_media(photo.public_path, processed.public_jpeg)
    images.write_media(photo.thumb_path, processed.thumb_jpeg)
    photo.original_path, photo.original_sha256 = original, processed.sha256
    photo.original_size, photo.original_mime = len(processed.original), processed.mime
    photo.width, photo.height = processed.width, processed.height
    photo.state, photo.error = PhotoState.READY, None
    return photo


def _discard_copies(photos: Iterable[TipPhoto]) -> None:
    # Originals are content-addressed and may be shared with another photo: only the derived copies go.
    for photo in photos:
        images.delete_media(photo.public_path, photo.thumb_path)


def _file_tip(
    openid: str,
    *,
    source: TipSource,
    category: str,
    description: str,
    location: Location,
    phone: str | None,
    submit_key: str,
    photos: list[TipPhoto],
    quota_keys: list[str],
    ip: str | None = None,
    new_files: bool = False,
) -> tuple[Tip, bool]:
    """One commit of the tip with its photos and first history entry; (tip, created). `quota_keys`: the citizen's
    quota the caller took for it, returned here when nothing is filed.

    The unique submit_key decides a double submit: the loser returns its quota and gets the first tip back.
    """
    keys = quota_keys
    try:
        for _ in range(5):
            tip = Tip(
                tracking_no=_new_tracking_no(),
                submit_key=submit_key,
                openid=openid,
                source=source,
                category=category,
                description=description,
                latitude=location.latitude,
                longitude=location.longitude,
                address=location.address,
                phone_enc=pii.encrypt(phone),
                ip=ip,
            )
            db.session.add(tip)
            for position, photo in enumerate(photos):
                photo.tip, photo.position = tip, position
                db.session.add(photo)
            tip.history.append(TipStatusChange(to_status=TipStatus.SUBMITTED, note=None))
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
                first = db.session.scalar(sa.select(Tip).filter_by(submit_key=submit_key))
                if first is not None:
                    _give_back_quota(keys)
                    if new_files:
                        _discard_copies(photos)
                    return first, False
                continue  # a tracking number collision: draw again
            break
        else:  # pragma: no cover  (five collisions in 8.5e11)
            raise ServiceError("系统繁忙，请稍后再试")
    except Exception:  # nothing was filed: the quota and the files written for it go back
        db.session.rollback()
        _give_back_quota(keys)
        if new_files:
            _discard_copies(photos)
        raise
    log.info("tip %s filed via %s with %d photos", tip.tracking_no, source.value, len(photos))
    alerts.scan_text(openid, description, source="tip", ref=tip.tracking_no)
    return tip, True


def submit_tip(
    openid: str,
    *,
    category: str,
    description: str,
    photos: list[bytes],
    latitude: Any = None,
    longitude: Any = None,
    address: str | None = None,
    phone: str | None = None,
    submit_key: str,
    ip: str | None = None,
) -> Tip:
    """File a tip from the H5 form once per submit_key: a double submit or a retry gets the first tip back."""
    submit_key = (submit_key or "").strip()
    if not 16 <= len(submit_key) <= 64:
        raise ServiceError("页面已过期，请刷新后重新提交")
    first = db.session.scalar(sa.select(Tip).filter_by(submit_key=submit_key))
    if first is not None:  # a resent form: no second tip, no photo work, no quota
        if first.openid != openid:
            raise ServiceError("页面已过期，请刷新后重新提交")
        return first
    if is_blocked(openid):
        raise ServiceError(BLOCKED)
    if category not in category_names():
        raise ServiceError("请选择线索类别")
    description = _check_description(description)
    location = parse_location(latitude, longitude, address)
    phone = _check_phone(phone)
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise ServiceError(f"请上传 1 到 {MAX_PHOTOS} 张照片")
    processed = []
    for n, data in enumerate(photos, 1):  # every photo is checked before any file is written
        try:
            processed.append(images.process_image(data))
        except images.ImageRejected as exc:
            raise images.ImageRejected(f"第 {n} 张照片：{exc}") from None
    keys = _take_quota(openid, ip)  # before any file is written: a citizen over the limit leaves none behind
    stored: list[TipPhoto] = []
    try:
        stored = [_store_files(TipPhoto(key=secrets.token_hex(16)), p) for p in processed]
    except Exception:
        _give_back_quota(keys)
        _discard_copies(stored)
        raise
    tip, _ = _file_tip(
        openid,
        source=TipSource.H5,
        category=category,
        description=description,
        location=location,
        phone=phone,
        submit_key=submit_key,
        photos=stored,
        quota_keys=keys,
        ip=ip,
        new_files=True,
    )
    return tip


def submit_partner_tip(
    openid: str,
    *,
    category: str,
    description: str,
    latitude: Any = None,
    longitude: Any = None,
    address: str | None = None,
    phone: str | None = None,
    submit_key: str,
) -> tuple[Tip, bool]:
    """File a tip for a partner system (Open311), without photos; (tip, created). Same checks as the H5 form.

    The partner's API key is rate-limited by its caller instead of the citizens' daily quota, which would cap
    a whole hotline at one citizen's allowance.
    """
    first = db.session.scalar(sa.select(Tip).filter_by(submit_key=submit_key))
    if first is not None:
        if first.openid != openid:
            raise ServiceError("submit_key 已被使用")
        return first, False
    if is_blocked(openid):
        raise ServiceError(BLOCKED)
    if category not in category_names():
        raise ServiceError("请选择线索类别")
    return _file_tip(
        openid,
        source=TipSource.OPEN311,
        category=category,
        description=_check_description(description),
        location=parse_location(latitude, longitude, address),
        phone=_check_phone(phone),
        submit_key=submit_key,
        photos=[],
        quota_keys=[],  # partners are rate-limited per key instead
    )


# -- the citizen's own tips ------------------------------------------------------------------------------------------


def own_tips(openid: str) -> list[Tip]:
    return list(db.session.scalars(sa.select(Tip).filter_by(openid=openid).order_by(Tip.created_at.desc()).limit(100)))


def find_own_tip(openid: str, tracking_no: str) -> Tip | None:
    """The citizen's tip by number; another citizen's number finds nothing (the same answer as a wrong number)."""
    no = normalise_no(tracking_no)
    if len(no) != TRACKING_LENGTH:
        return None
    return db.session.scalar(sa.select(Tip).filter_by(tracking_no=no, openid=openid))


def own_photo(openid: str, tracking_no: str, photo_id: int) -> TipPhoto | None:
    tip = find_own_tip(openid, tracking_no)
    photo = db.session.get(TipPhoto, photo_id) if tip else None
    return photo if photo is not None and photo.tip_id == tip.id and photo.state is PhotoState.READY else None


def mask_phone(tip: Tip) -> str:
    return pii.mask_phone(pii.decrypt(tip.phone_enc)) if tip.phone_enc else ""


def reveal_phone(tip: Tip) -> str:
    """The contact phone unmasked: a personal-data view, audited."""
    audit.record("tip.phone_view", kind=AuditKind.PII_VIEW, target=tip)
    db.session.commit()
    return pii.decrypt(tip.phone_enc) or ""


# -- nearby and support ----------------------------------------------------------------------------------------------


def _bbox(lat: float, lng: float, meters: float) -> tuple[float, float, float, float]:
    dlat = math.degrees(meters / EARTH_RADIUS_M)
    dlng = math.degrees(meters / (EARTH_RADIUS_M * max(math.cos(math.radians(lat)), 0.01)))
    return lat - dlat, lat + dlat, lng - dlng, lng + dlng


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _sql_distance(lat: float, lng: float) -> sa.ColumnElement[float]:
    f = sa.func
    p1, p2 = math.radians(lat), f.radians(Tip.latitude)
    a = f.power(f.sin((p2 - p1) / 2), 2) + math.cos(p1) * f.cos(p2) * f.power(
        f.sin((f.radians(Tip.longitude) - math.radians(lng)) / 2), 2
    )
    return 2 * EARTH_RADIUS_M * f.asin(f.least(1.0, f.sqrt(a)))


def nearby_open_tips(
    lat: float,
    lng: float,
    category: str,
    *,
    meters: float = NEARBY_METERS,
    exclude_id: int | None = None,
    limit: int = 20,
) -> list[tuple[Tip, float]]:
    """Open tips of one category within `meters`, nearest first: an indexed bounding box, then haversine in SQL."""
    min_lat, max_lat, min_lng, max_lng = _bbox(lat, lng, meters)
    where = [
        Tip.category == category,
        Tip.status.in_(OPEN_TIP_STATUSES),
        Tip.latitude.between(min_lat, max_lat),
        Tip.longitude.between(min_lng, max_lng),
    ]
    if exclude_id is not None:
        where.append(Tip.id != exclude_id)
    if db.engine.dialect.name == "postgresql":
        distance = _sql_distance(lat, lng).label("distance")
        rows = db.session.execute(
            sa.select(Tip, distance).where(*where, distance <= meters).order_by(distance).limit(limit)
        ).all()
        return [(tip, float(d)) for tip, d in rows]
    # SQLite (the embedded demo) may lack math functions: the box is small, finish in Python.
    found = [
        (t, haversine_m(lat, lng, t.latitude, t.longitude)) for t in db.session.scalars(sa.select(Tip).where(*where))
    ]
    return sorted([(t, d) for t, d in found if d <= meters], key=lambda pair: pair[1])[:limit]


def support_tip(openid: str, tracking_no: str) -> tuple[Tip, bool]:
    """A "+1" on someone else's open tip; (tip, added). One per openid per tip: the unique key decides."""
    tip = db.session.scalar(sa.select(Tip).filter_by(tracking_no=normalise_no(tracking_no)))
    if tip is None or not tip.status.is_open:
        raise ServiceError("该线索已办结或不存在")
    if tip.openid == openid:
        raise ServiceError("这是您自己提交的线索")
    if is_blocked(openid):
        raise ServiceError(BLOCKED)
    try:
        with db.session.begin_nested():
            db.session.add(TipSupport(tip_id=tip.id, openid=openid))
            db.session.flush()
    except IntegrityError:
        return tip, False
    db.session.execute(sa.update(Tip).where(Tip.id == tip.id).values(support_count=Tip.support_count + 1))
    db.session.commit()
    db.session.refresh(tip)
    return tip, True


def supported_ids(openid: str, tip_ids: list[int]) -> set[int]:
    if not tip_ids:
        return set()
    stmt = sa.select(TipSupport.tip_id).where(TipSupport.openid == openid, TipSupport.tip_id.in_(tip_ids))
    return set(db.session.scalars(stmt))


# -- chat flow -------------------------------------------------------------------------------------------------------


def _is_officer(openid: str) -> bool:
    stmt = sa.select(Staff.id).where(Staff.openid == openid, Staff.role == Role.OFFICER, Staff.active.is_(True))
    return db.session.scalar(stmt) is not None


def _open_draft(openid: str, lapsed: list[TipDraft] | None = None) -> TipDraft | None:
    now = utcnow()
    draft = db.session.scalar(sa.select(TipDraft).filter_by(openid=openid, state=TipDraftState.OPEN))
    if draft is not None and draft.expires_at <= now:
        draft.state = TipDraftState.EXPIRED  # kept, with its photos: nothing sent is deleted
        db.session.commit()
        if lapsed is not None and now - draft.expires_at <= EXPIRY_TOLD_WITHIN:
            lapsed.append(draft)
        return None
    return draft


def _point_to(openid: str, draft_id: int | None) -> None:
    """Redis's pointer to the open draft (the hot path's one GET); the row stays the truth when Redis is down."""
    try:
        if draft_id is None:
            get_redis().delete(DRAFT_KEY.format(openid))
        else:  # it outlives the window: the first text after it lapses finds the draft and is told (once)
            get_redis().set(
                DRAFT_KEY.format(openid), draft_id, ex=int((CHAT_WINDOW + EXPIRY_TOLD_WITHIN).total_seconds())
            )
    except RedisError:
        log.warning("tip draft pointer for %s not updated: Redis unavailable", draft_id or "a closed draft")
        from server.services import chat  # imports this module

        chat.pointer_lost()


def repoint_open_drafts() -> None:
    """After Redis lost its data: point at every draft still open, or lapsed recently enough to be told so."""
    since = utcnow() - EXPIRY_TOLD_WITHIN
    stmt = sa.select(TipDraft.openid, TipDraft.id).where(
        TipDraft.state == TipDraftState.OPEN, TipDraft.expires_at > since
    )
    for openid, draft_id in db.session.execute(stmt).all():
        _point_to(openid, draft_id)


def _draft_from_cache(openid: str, lapsed: list[TipDraft] | None = None) -> TipDraft | None:
    """The hot path: one Redis GET when no draft is open. Redis only points at the row; the row is the truth.
    `lapsed` receives the draft the pointer led to if its window has just run out."""
    try:
        raw = get_redis().get(DRAFT_KEY.format(openid))
    except RedisError:  # Redis down: the row is the truth (chat.open_flows sends every text here then)
        return _open_draft(openid, lapsed)
    if raw is None:
        return None
    draft = db.session.get(TipDraft, int(raw))
    if draft is None or draft.state is not TipDraftState.OPEN or draft.expires_at <= utcnow():
        _point_to(openid, None)
        just_lapsed = draft is not None and draft.state is TipDraftState.OPEN
        # A stale pointer (its draft closed while Redis was unreachable, or a rebuild raced a submit) may hide a
        # draft opened since: the row decides, at the cost of one query on this rare path.
        if (still_open := _open_draft(openid)) is not None:
            return still_open
        if just_lapsed and lapsed is not None and draft.state is TipDraftState.EXPIRED:
            lapsed.append(draft)
        return None
    return draft


def _touch(draft: TipDraft) -> None:
    """The window slides: each message gives the citizen another 10 minutes."""
    draft.expires_at = utcnow() + CHAT_WINDOW
    db.session.commit()
    _point_to(draft.openid, draft.id)


def _live_photos(draft: TipDraft) -> list[TipPhoto]:
    return [p for p in draft.photos if p.state is not PhotoState.FAILED]


def _missing(draft: TipDraft) -> list[str]:
    missing = []
    if not _live_photos(draft):
        missing.append("照片")
    if draft.latitude is None:
        missing.append("位置（点输入框旁的「+」→「位置」）")
    if not draft.description:
        missing.append("文字说明（5 个字以上，描述发生了什么）")
    return missing


def _progress(draft: TipDraft, head: str) -> str:
    missing = _missing(draft)
    lines = [head]
    if _live_photos(draft) and draft.latitude is not None:
        # Only the description is left, and 提交 files without one: say it is optional, not "还需要" beside 提交.
        if missing:
            lines.append(
                f"请发送文字说明（{DESCRIPTION_MIN} 个字以上，描述发生了什么），发送后即提交；"
                "不写说明，发送「提交」直接提交。"
            )
        else:
            lines.append("发送「提交」即可提交。")
    elif missing:
        lines.append("还需要：" + "；".join(missing) + "。")
    lines.append("发送「取消」放弃本次举报。10 分钟内没有新消息将自动失效。")
    return "\n".join(lines)


def _submit_draft(draft: TipDraft) -> str:
    photos = _live_photos(draft)
    description = draft.description or "市民通过公众号对话提交的照片线索"
    try:
        tip, _ = _file_tip(
            draft.openid,
            source=TipSource.CHAT,
            category=category_from_text(draft.description or ""),
            description=description[:DESCRIPTION_MAX],
            location=Location(draft.latitude, draft.longitude, draft.address),
            phone=None,
            submit_key=f"chat-draft:{draft.id}",
            photos=photos,
            quota_keys=_take_quota(draft.openid, None),
        )
    except ServiceError as exc:
        return str(exc)
    draft = db.session.get(TipDraft, draft.id)  # the commit above may have rolled back and reloaded
    draft.state, draft.tip_id = TipDraftState.SUBMITTED, tip.id
    db.session.commit()
    _point_to(draft.openid, None)
    reply = (
        f"线索已提交，编号 {tip.display_no}（{len(photos)} 张照片）。\n"
        "我们会尽快受理，处理进展会通过消息通知您；发送编号也可查询。"
    )
    if link := _tip_url(tip):
        reply += f"\n查看详情：{link}"
    return reply


def receive_chat_image(openid: str, media_id: str, at: datetime) -> str:
    """A photo sent in chat: opens or extends the citizen's draft; the download runs in a task."""
    if _is_officer(openid):
        return OFFICER_PHOTO  # officers' photos become material items (another feature), never tips
    if is_blocked(openid):
        return BLOCKED
    draft = _draft_from_cache(openid) or _open_draft(openid)
    if draft is None:
        draft = TipDraft(openid=openid, expires_at=utcnow() + CHAT_WINDOW)
        try:
            with db.session.begin_nested():  # two photos at once: the partial unique index keeps one open draft
                db.session.add(draft)
        except IntegrityError:
            draft = db.session.scalars(sa.select(TipDraft).filter_by(openid=openid, state=TipDraftState.OPEN)).one()
    if len(draft.photos) >= MAX_PHOTOS:
        _touch(draft)
        return _progress(draft, f"每条线索最多 {MAX_PHOTOS} 张照片，这张没有加入。")
    photo = TipPhoto(key=secrets.token_hex(16), media_id=media_id[:128], position=len(draft.photos))
    draft.photos.append(photo)
    _touch(draft)  # commits the photo row first: the download task must find it
    from server.tasks import tips as tip_tasks

    _enqueue(tip_tasks.fetch_chat_photo, photo.id)
    count = len(draft.photos)
    head = "已收到照片，正在为您填写随手拍举报。" if count == 1 else f"已收到第 {count} 张照片。"
    return _progress(draft, head)


def attach_chat_location(openid: str, latitude: float, longitude: float, label: str | None, at: datetime) -> str | None:
    """A location sent while a tip is being assembled in chat; None when none is (other features answer then)."""
    lapsed: list[TipDraft] = []
    draft = _draft_from_cache(openid, lapsed)
    if draft is None:
        return _lapsed_notice(lapsed[0]) if lapsed else None
    try:  # wechatpy hands over the XML's text
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        lat = lng = math.nan
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return "位置信息有误，请重新发送位置。"
    draft.latitude, draft.longitude = lat, lng
    draft.address = _clean_text(label)[:ADDRESS_MAX] or None
    if not _missing(draft):
        return _submit_draft(draft)
    _touch(draft)
    return _progress(draft, "已收到位置" + (f"：{draft.address}" if draft.address else "") + "。")


def reply_to_chat_text(openid: str, text: str, at: datetime) -> str | None:
    """A text sent while the citizen is assembling a tip in chat; None when no tip is being assembled.

    Runs on every text message: with no draft open it costs one Redis GET and nothing else.
    """
    lapsed: list[TipDraft] = []
    draft = _draft_from_cache(openid, lapsed)
    if draft is None:
        return _lapsed_notice(lapsed[0]) if lapsed else None
    text = _clean_text(text)
    if text in CANCEL_WORDS:
        draft.state = TipDraftState.CANCELLED
        db.session.commit()
        _point_to(openid, None)
        return "已取消本次随手拍举报，照片不会提交。"
    if text in SUBMIT_WORDS:
        if not _live_photos(draft) or draft.latitude is None:
            _touch(draft)
            return _progress(draft, "至少需要一张照片和位置才能提交。")
        return _submit_draft(draft)
    if len(text) < DESCRIPTION_MIN:
        _touch(draft)
        return _progress(draft, f"文字说明请至少 {DESCRIPTION_MIN} 个字。")
    combined = f"{draft.description}\n{text}" if draft.description else text
    if len(combined) > DESCRIPTION_MAX:
        _touch(draft)
        return _progress(draft, f"文字说明最多 {DESCRIPTION_MAX} 个字，这段没有加入。")
    draft.description = combined
    if not _missing(draft):
        return _submit_draft(draft)
    _touch(draft)
    return _progress(draft, "已记录文字说明。")


def _lapsed_notice(draft: TipDraft) -> str:
    """The draft this text was meant for has just lapsed (its pointer is cleared, so this is said once): say so,
    rather than answer with the general default reply while the photos are silently set aside."""
    minutes = int(CHAT_WINDOW.total_seconds() // 60)
    return (
        f"您之前发送的 {len(draft.photos)} 张照片超过 {minutes} 分钟没有补全位置和文字说明，这次随手拍没有提交。"
        "如需举报，请重新发送现场照片，再发送位置和文字说明。"
    )


STALLED_AFTER = timedelta(minutes=10)  # longer than a download task's own retries take
CHAT_MEDIA_LIFETIME = timedelta(days=3)  # WeChat keeps temporary media this long


def stalled_chat_photos(now: datetime | None = None) -> list[int]:
    """Chat photos still waiting for their download: its task's retries were spent in an outage, or it was never
    queued (the broker was down). WeChat still has them for three days."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            sa.select(TipPhoto.id)
            .where(
                TipPhoto.state == PhotoState.PENDING,
                TipPhoto.media_id.is_not(None),
                TipPhoto.created_at.between(now - CHAT_MEDIA_LIFETIME, now - STALLED_AFTER),
            )
            .order_by(TipPhoto.id)
            .limit(200)
        )
    )


def fetch_chat_photo(photo_id: int) -> None:
    """Task body: download a chat photo from WeChat, verify and store it. Idempotent; transient errors raise."""
    photo = db.session.get(TipPhoto, photo_id)
    if photo is None or photo.state is not PhotoState.PENDING or not photo.media_id:
        return
    try:
        res = get_client().media.download(photo.media_id)
        data = res.content if hasattr(res, "content") else b""
        processed = images.process_image(data[: images.MAX_BYTES + 1])
    except WeChatClientException as exc:
        if exc.errcode not in (40007, 41006):  # only an unknown or expired media_id is final
            raise
        _fail_photo(photo, "微信照片已过期或不存在")
        return
    except images.ImageRejected as exc:
        _fail_photo(photo, str(exc))
        return
    _store_files(photo, processed)
    db.session.commit()


def _fail_photo(photo: TipPhoto, error: str) -> None:
    log.info("chat photo %s refused: %s", photo.id, error)
    photo.state, photo.error = PhotoState.FAILED, error[:200]
    db.session.commit()


# -- lifecycle -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    sources: frozenset[TipStatus]
    target: TipStatus
    by_unit: bool  # the dispatched unit's liaison may do it too


EDITORS = frozenset({Role.ADMIN, Role.EDITOR})
ACTIONS = {
    a.name: a
    for a in (
        Action("accept", "受理", frozenset({TipStatus.SUBMITTED}), TipStatus.ACCEPTED, False),
        Action(  # again from 处理中 too: a unit that started a tip outside its area hands it on (else only 办结)
            "dispatch",
            "派发",
            frozenset({TipStatus.SUBMITTED, TipStatus.ACCEPTED, TipStatus.DISPATCHED, TipStatus.IN_PROGRESS}),
            TipStatus.DISPATCHED,
            False,
        ),
        Action("start", "开始处理", frozenset({TipStatus.DISPATCHED}), TipStatus.IN_PROGRESS, True),
        Action("resolve", "办结", frozenset({TipStatus.DISPATCHED, TipStatus.IN_PROGRESS}), TipStatus.RESOLVED, True),
        Action("reject", "不予受理", frozenset({TipStatus.SUBMITTED, TipStatus.ACCEPTED}), TipStatus.REJECTED, False),
        Action(
            "duplicate",
            "标记重复",
            frozenset({TipStatus.SUBMITTED, TipStatus.ACCEPTED, TipStatus.DISPATCHED}),
            TipStatus.DUPLICATE,
            False,
        ),
    )
}
DUPLICATE_LOCK_KEY = 0x7469_7064  # pg_advisory_xact_lock key ("tipd") serialising duplicate marks
CITIZEN_NOTIFIED = {TipStatus.ACCEPTED, TipStatus.RESOLVED, TipStatus.REJECTED, TipStatus.DUPLICATE}


class NotAllowed(ServiceError):
    """The role or unit may not make this change (a 403 in the console)."""


def _in_units(staff: Staff, unit_id: int | None) -> bool:
    return bool(staff.unit_id and unit_id and unit_id in staff_service.unit_and_descendants(staff.unit_id))


def may_act(staff: Staff, tip: Tip, action: Action) -> bool:
    if staff.role in EDITORS:
        return True
    return action.by_unit and staff.role is Role.LIAISON and _in_units(staff, tip.unit_id)


def allowed_actions(tip: Tip, staff: Staff) -> list[Action]:
    return [a for a in ACTIONS.values() if tip.status in a.sources and may_act(staff, tip, a)]


def transition(
    tip_id: int,
    action_name: str,
    staff: Staff,
    *,
    note: str | None = None,
    unit_id: int | None = None,
    duplicate_of: str | None = None,
    notify: bool = True,
) -> Tip:
    """One status change by an allowed role: history, audit, notices (outbox) in one commit, then delivery."""
    action = ACTIONS.get(action_name)
    if action is None:
        raise ServiceError("未知操作")
    if action.target is TipStatus.DUPLICATE and db.engine.dialect.name == "postgresql":
        # A duplicate mark locks two tips: marks run one at a time, or A→B and B→A at once would deadlock (a 500),
        # and the chain read below cannot change while one runs.
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(DUPLICATE_LOCK_KEY)))
    tip = db.session.scalar(sa.select(Tip).where(Tip.id == tip_id).with_for_update())  # two editors at once: serial
    if tip is None:
        raise ServiceError("线索不存在")
    if not may_act(staff, tip, action):
        raise NotAllowed("您没有权限进行此操作")
    if tip.status not in action.sources:
        raise ServiceError(f"线索当前为「{tip.status.label}」，不能{action.label}")
    note = _clean_text(note) or None
    if note and len(note) > NOTE_MAX:
        raise ServiceError(f"说明最多 {NOTE_MAX} 个字")
    if action.target is TipStatus.REJECTED and not note:
        raise ServiceError("请填写不予受理的原因，市民会看到")
    before = {"status": tip.status.value, "unit_id": tip.unit_id}
    if action.target is TipStatus.DISPATCHED:
        unit = db.session.get(Unit, unit_id) if unit_id else None
        if unit is None:
            raise ServiceError("请选择派发单位")
        if tip.status in (TipStatus.DISPATCHED, TipStatus.IN_PROGRESS) and tip.unit_id == unit.id:  # a double click
            raise ServiceError(f"线索已派发给「{unit.name}」")
        if tip.status is TipStatus.SUBMITTED:  # dispatching implies acceptance; the citizen hears of it
            _change(tip, TipStatus.ACCEPTED, staff, None, notify=notify)
        tip.unit_id = unit.id
        _change(tip, TipStatus.DISPATCHED, staff, note, unit=unit, notify=notify)
    elif action.target is TipStatus.DUPLICATE:
        typed = _clean_text(duplicate_of)
        if not typed:
            raise ServiceError("请填写被重复的线索编号")
        original = db.session.scalar(sa.select(Tip).filter_by(tracking_no=normalise_no(typed)))
        if original is None:
            raise ServiceError(f"没有编号为 {typed[:20]} 的线索，请核对编号")
        seen = {original.id}
        while original.status is TipStatus.DUPLICATE and original.duplicate_of is not None:
            original = original.duplicate_of  # the one actually handled: a duplicate of a duplicate hears its outcome
            if original.id in seen:
                break
            seen.add(original.id)
        if original.id == tip.id:
            raise ServiceError("不能标记为自身的重复，请填写另一条线索的编号")
        # Locked and read again: closing it at this moment either waits for this (and finds the new duplicate) or
        # has committed (and this refuses), so no duplicate points at a closed tip its citizen never hears of.
        original = db.session.scalar(
            sa.select(Tip).where(Tip.id == original.id).with_for_update().execution_options(populate_existing=True)
        )
        if not original.status.is_open:  # 「将与该线索一并处理」 would be false; a problem back again is a new tip
            raise ServiceError(
                f"线索 {original.display_no} 已是「{original.status.label}」，不能作为重复依据；"
                "问题仍存在的，请按新线索办理"
            )
        tip.duplicate_of_id = original.id
        # Its own duplicates follow it to the tip actually handled, and hear that one's outcome.
        for dup in db.session.scalars(sa.select(Tip).where(Tip.duplicate_of_id == tip.id)):
            dup.duplicate_of_id = original.id
        # The citizen reads the note: it does not name the other citizen's tip (the console links it).
        _change(tip, TipStatus.DUPLICATE, staff, note or "已有市民反映同一问题，将与该线索一并处理", notify=notify)
    else:
        _change(tip, action.target, staff, note, notify=notify)
        if not action.target.is_open:  # its duplicates' citizens were told it would be handled with theirs
            _close_duplicates(tip, staff, notify=notify)
    audit.record(
        f"tip.{action.name}",
        target=tip,
        before=before,
        after={"status": tip.status.value, "unit_id": tip.unit_id, "note": note, "duplicate_of": duplicate_of},
    )
    db.session.commit()
    if notify:
        from server.tasks import tips as tip_tasks

        _enqueue(tip_tasks.deliver_tip_notices)
    return tip


def _change(
    tip: Tip, status: TipStatus, staff: Staff, note: str | None, *, unit: Unit | None = None, notify: bool
) -> None:
    change = TipStatusChange(
        from_status=tip.status,
        to_status=status,
        note=note,
        unit_id=unit.id if unit else tip.unit_id,
        staff_id=staff.id,
        staff_name=staff.name,
        at=utcnow(),
    )
    tip.history.append(change)
    tip.status, tip.status_changed_at = status, change.at
    db.session.flush()  # the change's id names its notices
    if not notify:
        return
    if status in CITIZEN_NOTIFIED and tip.source is not TipSource.OPEN311:  # partners poll; no openid to notify
        _queue_notice(
            tip, NoticeKind.CITIZEN, f"tip:{tip.id}:change:{change.id}:citizen", _citizen_payload(tip, change)
        )
    if status is TipStatus.DISPATCHED and unit is not None:
        _queue_notice(
            tip, NoticeKind.UNIT, f"tip:{tip.id}:change:{change.id}:unit", _unit_payload(tip, change), unit_id=unit.id
        )


def _close_duplicates(tip: Tip, staff: Staff, *, notify: bool) -> None:
    """The duplicates of a tip just closed: resolved, their citizens hear how (their tips stay 重复); rejected, they
    are triaged again on their own (the reason was about the other report, e.g. 照片无法看清)."""
    dups = db.session.scalars(
        sa.select(Tip).where(Tip.duplicate_of_id == tip.id, Tip.status == TipStatus.DUPLICATE).order_by(Tip.id)
    )
    note = tip.history[-1].note
    for dup in dups:
        if tip.status is TipStatus.RESOLVED:
            text = f"同一问题的线索已办结：{note}" if note else "同一问题的线索已办结"
            _change(dup, TipStatus.DUPLICATE, staff, text[:NOTE_MAX], notify=notify)
        else:
            dup.duplicate_of_id = None
            _change(dup, TipStatus.SUBMITTED, staff, "关联的线索未予受理，本线索重新进入受理", notify=notify)


def bulk_dispatch(tip_ids: list[int], unit_id: int, staff: Staff, *, note: str | None = None) -> tuple[int, list[str]]:
    """Dispatch several tips to one unit; (done, problems). Each tip is its own transition."""
    done, problems = 0, []
    for tip_id in tip_ids:
        try:
            transition(tip_id, "dispatch", staff, note=note, unit_id=unit_id)
            done += 1
        except NotAllowed:
            raise
        except ServiceError as exc:
            db.session.rollback()
            tip = db.session.get(Tip, tip_id)
            problems.append(f"{tip.display_no if tip else tip_id}：{exc}")
    return done, problems


# -- notices (outbox) ------------------------------------------------------------------------------------------------


def _short(text: str | None, n: int = 20) -> str:
    text = (text or "").replace("\n", " ").strip() or "—"
    return text if len(text) <= n else text[: n - 1] + "…"


def _tip_url(tip: Tip) -> str | None:
    return public_url("citizen.tip_detail", tracking_no=tip.tracking_no)


def _citizen_payload(tip: Tip, change: TipStatusChange) -> dict[str, Any]:
    default = {
        TipStatus.ACCEPTED: "您的线索已受理，我们会尽快处理",
        TipStatus.RESOLVED: "您反映的问题已处理完毕，感谢支持",
        TipStatus.REJECTED: "您的线索未予受理",
        TipStatus.DUPLICATE: "已有市民反映同一问题，将一并处理",
    }.get(change.to_status, "")
    return {
        "template_id": current_app.config.get("WECHAT_TEMPLATE_TIP_STATUS") or DEMO_TEMPLATE_STATUS,
        "url": _tip_url(tip),
        "data": {
            "character_string1": {"value": tip.display_no},
            "phrase2": {"value": change.to_status.label},
            "time3": {"value": local_dt(change.at)},
            "thing4": {"value": _short(change.note or default)},
        },
    }


def _unit_payload(tip: Tip, change: TipStatusChange) -> dict[str, Any]:
    return {
        "template_id": current_app.config.get("WECHAT_TEMPLATE_TIP_DISPATCH") or DEMO_TEMPLATE_DISPATCH,
        "url": public_url("console.tip_detail", tip_id=tip.id),  # the liaison opens the tip from the notice
        "data": {
            "character_string1": {"value": tip.display_no},
            "thing2": {"value": _short(tip.category)},
            "thing3": {"value": _short(tip.address or tip.description)},
            "time4": {"value": local_dt(change.at)},
        },
    }


def _queue_notice(tip: Tip, kind: NoticeKind, key: str, payload: dict[str, Any], unit_id: int | None = None) -> None:
    db.session.add(TipNotice(tip_id=tip.id, kind=kind, dedupe_key=key, payload=payload, unit_id=unit_id))


def _claim(limit: int) -> list[tuple[int, int]]:
    """Claim due rows for this worker: SKIP LOCKED lets workers run side by side without taking the same row."""
    now = utcnow()
    stmt = (
        sa.select(TipNotice)
        .where(
            sa.or_(
                sa.and_(TipNotice.state == NoticeState.PENDING, TipNotice.next_attempt_at <= now),
                # Orphaned by a worker that died mid-send: resent with the same client_msg_id, which WeChat dedupes.
                sa.and_(TipNotice.state == NoticeState.SENDING, TipNotice.claimed_at < now - NOTICE_STALE),
            )
        )
        .order_by(TipNotice.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(db.session.scalars(stmt))
    for row in rows:
        row.state, row.claimed_at, row.attempts = NoticeState.SENDING, now, row.attempts + 1
    db.session.commit()
    return [(row.id, row.attempts) for row in rows]


def _recipient(notice: TipNotice) -> str | None:
    if notice.kind is NoticeKind.CITIZEN:
        return db.session.scalar(sa.select(Tip.openid).where(Tip.id == notice.tip_id))
    unit = db.session.get(Unit, notice.unit_id) if notice.unit_id else None
    post = staff_service.publicity_contact(unit, bound=True) if unit is not None else None
    return post.openid if post is not None else None


def unreachable_warning(unit_id: int | None) -> str | None:
    """Said after a dispatch when nobody in the unit can get its WeChat notice (the notice would fail unseen)."""
    unit = db.session.get(Unit, unit_id) if unit_id else None
    if unit is None or staff_service.publicity_contact(unit, bound=True) is not None:
        return None
    return f"「{unit.name}」的 A/B 岗都没有绑定微信的在职人员，派发通知无法送达，请电话告知该单位"


def _still_mine(notice_id: int, attempt: int) -> bool:
    """Stamp the claim again as its send starts: the rows of a batch go one after another, and one that waited in it
    past NOTICE_STALE (WeChat answering at the timeout) is taken by the next run; False then, and it is left alone."""
    mine = db.session.execute(
        sa.update(TipNotice)
        .where(TipNotice.id == notice_id, TipNotice.state == NoticeState.SENDING, TipNotice.attempts == attempt)
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return mine == 1


def _send(notice_id: int, attempt: int) -> None:
    if not _still_mine(notice_id, attempt):
        return
    notice = db.session.get(TipNotice, notice_id, populate_existing=True)
    to = _recipient(notice)
    if to is None:
        notice.state, notice.last_error = NoticeState.FAILED, "单位未设置 A/B 岗，或联络人未绑定微信"
        db.session.commit()
        return
    payload = notice.payload
    body = {
        "touser": to,
        "template_id": payload["template_id"],
        "data": payload["data"],
        "client_msg_id": f"tip-notice-{notice.id}",  # WeChat sends one message per openid + client_msg_id
    }
    if payload.get("url"):
        body["url"] = payload["url"]
    error, permanent = send_template(body)
    notice = db.session.get(TipNotice, notice_id)
    notice.recipient = to
    if error is None:
        notice.state, notice.sent_at, notice.last_error = NoticeState.SENT, utcnow(), None
    elif permanent or notice.attempts >= NOTICE_MAX_ATTEMPTS:
        notice.state, notice.last_error = NoticeState.FAILED, error[:300]
    else:
        backoff = min(60 * 2 ** (notice.attempts - 1), 3600)  # 1, 2, 4 … minutes, at most an hour
        notice.state, notice.last_error = NoticeState.PENDING, error[:300]
        notice.next_attempt_at = utcnow() + timedelta(seconds=backoff)
    db.session.commit()
    if error:
        log.info("tip notice %s not sent (attempt %s): %s", notice.id, notice.attempts, error)


def deliver_due_notices(limit: int = 50) -> int:
    """Send what is due; returns how many rows this call claimed. Safe to run in any number of workers at once."""
    claimed = _claim(limit)
    for notice_id, attempt in claimed:
        _send(notice_id, attempt)
    return len(claimed)


def forget_contact_details(before: datetime) -> int:
    """A closed tip's phone number and IP address, kept for the follow-up calls and the abuse limits, go once the tip
    has been closed since `before`; the tip, its photos and history stay. Returns how many tips were cleared."""
    cleared = db.session.execute(
        sa.update(Tip)
        .where(
            Tip.status.not_in(OPEN_TIP_STATUSES),
            Tip.status_changed_at < before,
            sa.or_(Tip.phone_enc.is_not(None), Tip.ip.is_not(None)),
        )
        .values(phone_enc=None, ip=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return cleared


def notices_of(tip: Tip) -> list[TipNotice]:
    return list(db.session.scalars(sa.select(TipNotice).filter_by(tip_id=tip.id).order_by(TipNotice.id)))


# -- console: queue, SLA, duplicates, photos, export -----------------------------------------------------------------


def sla_hours() -> dict[str, int]:
    row = db.session.get(SiteSetting, SLA_SETTING_KEY)
    stored = row.value if row is not None and isinstance(row.value, dict) else {}
    return {k: int(stored.get(k, v)) for k, v in DEFAULT_SLA_HOURS.items()}


def save_sla_hours(values: Mapping[str, Any]) -> dict[str, int]:
    hours: dict[str, int] = {}
    for key in DEFAULT_SLA_HOURS:
        value = to_int(str(values.get(key, "")), lo=1, hi=24 * 60)
        if value is None:
            raise ServiceError(f"「{TipStatus(key).label}」的时限须为 1 到 1440 小时")
        hours[key] = value
    before = sla_hours()
    row = db.session.get(SiteSetting, SLA_SETTING_KEY)
    if row is None:
        db.session.add(SiteSetting(key=SLA_SETTING_KEY, value=hours))
    else:
        row.value = hours
    audit.record("tip.sla_save", target_type="site_setting", target_id=SLA_SETTING_KEY, before=before, after=hours)
    db.session.commit()
    return hours


def due_at(tip: Tip, hours: Mapping[str, int]) -> datetime | None:
    limit = hours.get(tip.status.value)
    return tip.status_changed_at + timedelta(hours=limit) if limit else None


@dataclass
class TipFilter:
    status: str = ""
    category: str = ""
    unit_id: int | None = None
    since: date | None = None
    until: date | None = None
    district: str = ""
    bbox: tuple[float, float, float, float] | None = None  # min_lat, min_lng, max_lat, max_lng
    overdue: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, str]:
        out = {
            "status": self.status,
            "category": self.category,
            "unit": str(self.unit_id or ""),
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "district": self.district,
            "bbox": ",".join(f"{v:g}" for v in self.bbox) if self.bbox else "",
            "overdue": "1" if self.overdue else "",
        }
        return {k: v for k, v in out.items() if v}


def parse_filter(args: Mapping[str, str]) -> TipFilter:
    f = TipFilter()
    status = args.get("status", "")
    if status in {s.value for s in TipStatus} or status == "open":
        f.status = status
    f.category = args.get("category", "")[:32]
    f.unit_id = to_int(args.get("unit"), lo=1)
    for name in ("since", "until"):
        raw = args.get(name, "")
        if raw:
            try:
                setattr(f, name, date.fromisoformat(raw))
            except ValueError:
                f.errors.append("日期格式应为 YYYY-MM-DD")
    f.district = args.get("district", "").strip()[:40]
    if raw := args.get("bbox", "").strip():
        try:
            a, b, c, d = (float(x) for x in raw.split(","))
            if not (a < c and b < d):
                raise ValueError
            f.bbox = (a, b, c, d)
        except ValueError:
            f.errors.append("区域格式应为 最小纬度,最小经度,最大纬度,最大经度")
    f.overdue = args.get("overdue") == "1"
    return f


def _where(f: TipFilter, visible_units: list[int] | None) -> list[Any]:
    where: list[Any] = []
    if visible_units is not None:  # a liaison: their unit and those below it, nothing else
        where.append(Tip.unit_id.in_(visible_units or [-1]))
    if f.status == "open":
        where.append(Tip.status.in_(OPEN_TIP_STATUSES))
    elif f.status:
        where.append(Tip.status == TipStatus(f.status))
    if f.category:
        where.append(Tip.category == f.category)
    if f.unit_id:
        where.append(Tip.unit_id.in_(staff_service.unit_and_descendants(f.unit_id)))
    if f.since:
        where.append(Tip.created_at >= datetime.combine(f.since, time.min, LOCAL_TZ))
    if f.until:
        where.append(Tip.created_at < datetime.combine(f.until + timedelta(days=1), time.min, LOCAL_TZ))
    if f.district:
        where.append(Tip.address.contains(f.district, autoescape=True))
    if f.bbox:
        a, b, c, d = f.bbox
        where += [Tip.latitude.between(a, c), Tip.longitude.between(b, d)]
    if f.overdue:
        hours = sla_hours()
        now = utcnow()
        where.append(
            sa.or_(
                *[
                    sa.and_(Tip.status == TipStatus(k), Tip.status_changed_at < now - timedelta(hours=v))
                    for k, v in hours.items()
                ]
            )
        )
    return where


@dataclass
class SearchResult:
    rows: list[Tip]
    total: int
    page: int
    pages: int


def search(f: TipFilter, visible_units: list[int] | None, page: int = 1, per_page: int = 50) -> SearchResult:
    where = _where(f, visible_units)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Tip).where(*where)) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    rows = db.session.scalars(
        sa.select(Tip)
        .where(*where)
        .order_by(Tip.created_at.desc(), Tip.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return SearchResult(list(rows), total, page, pages)


def map_points(f: TipFilter, visible_units: list[int] | None, limit: int = 2000) -> list[Tip]:
    stmt = sa.select(Tip).where(*_where(f, visible_units), Tip.latitude.is_not(None)).order_by(Tip.id.desc())
    return list(db.session.scalars(stmt.limit(limit)))


def duplicate_candidates(tip: Tip) -> list[tuple[Tip, float]]:
    if tip.latitude is None or tip.longitude is None or not tip.status.is_open:
        return []
    return nearby_open_tips(tip.latitude, tip.longitude, tip.category, exclude_id=tip.id, limit=10)


EXPORT_HEADER = ["编号", "提交时间", "来源", "类别", "状态", "状态更新", "承办单位", "地址", "纬度", "经度",
                 "描述", "联系电话", "照片数", "附议数"]  # fmt: skip


def export_xlsx(f: TipFilter, visible_units: list[int] | None, *, reveal_phone: bool) -> bytes:
    """The filtered tips as an Excel workbook; phones masked unless the role may see them. Audited (EXPORT).

    Every matching tip, streamed from the database in batches: memory stays flat however many years are exported."""
    from openpyxl import Workbook

    where = _where(f, visible_units)
    photos = sa.select(sa.func.count()).where(TipPhoto.tip_id == Tip.id).scalar_subquery()
    stmt = (
        sa.select(Tip, photos)
        .where(*where)
        .order_by(Tip.created_at.desc(), Tip.id.desc())
        .execution_options(yield_per=1000)
    )
    units = {u.id: u.name for u in db.session.scalars(sa.select(Unit))}
    book = Workbook(write_only=True)
    sheet = book.create_sheet("线索")
    sheet.append(EXPORT_HEADER)
    rows = 0
    for t, photo_count in db.session.execute(stmt):
        rows += 1
        phone = pii.decrypt(t.phone_enc) if reveal_phone else mask_phone(t)
        sheet.append(
            [
                t.display_no,
                local_dt(t.created_at),
                t.source.label,
                sheets.text(t.category),
                t.status.label,
                local_dt(t.status_changed_at),
                units.get(t.unit_id or 0, ""),
                sheets.text(t.address),
                t.latitude,
                t.longitude,
                sheets.text(t.description),
                sheets.text(phone or ""),
                photo_count,
                t.support_count,
            ]
        )
    audit.record(  # the rows written, as the file holds them
        "tip.export",
        kind=AuditKind.EXPORT,
        target_type="tip",
        after={"filter": f.as_dict(), "rows": rows, "phones": "明文" if reveal_phone else "脱敏"},
    )
    db.session.commit()
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def reply_to_tracking_number(openid: str, text: str) -> str | None:
    """A citizen's own tracking number sent in chat ("84W3-9EZ5", any case, "编号 84W3-9EZ5"): the tip's status and
    its page. None for anything else, someone else's number included (the same silence: numbers are not a way to
    find others' tips)."""
    # The words citizens put around it go: 「编号 84W3-9EZ5」 copied from the filing reply, 「查询…」, 「…进度」.
    candidate = re.sub(r"[\s\-－_:：?？。]|查询|线索|举报|编号|进度|状态", "", text or "").upper()
    if len(candidate) != TRACKING_LENGTH or any(c not in TRACKING_ALPHABET for c in candidate):
        return None
    tip = db.session.scalar(sa.select(Tip).where(Tip.tracking_no == candidate, Tip.openid == openid))
    if tip is None:
        return None
    reply = f"线索 {tip.display_no}（{tip.category}）当前状态：{tip.status.label}。"
    if link := _tip_url(tip):
        reply += f"\n查看详情：{link}"
    return reply


def photo_for_console(photo_id: int) -> TipPhoto | None:
    photo = db.session.get(TipPhoto, photo_id)
    return photo if photo is not None and photo.tip_id is not None else None


def log_original_view(photo: TipPhoto) -> None:
    """Originals keep their EXIF (GPS, device): looking at one is a personal-data view."""
    audit.record("tip.photo_original_view", kind=AuditKind.PII_VIEW, target=photo)
    db.session.commit()


def redact_photo(photo: TipPhoto, box: tuple[float, float, float, float]) -> TipPhoto:
    """Blur a rectangle of the public copy (and its thumbnail); the original evidence is not touched."""
    if photo.state is not PhotoState.READY:
        raise ServiceError("照片尚未处理完成")
    public = images.media_path(photo.public_path).read_bytes()
    redacted = images.redact(public, box)
    processed = images.process_image(redacted)
    old_public, old_thumb = photo.public_path, photo.thumb_path
    photo.key = secrets.token_hex(16)  # new file names: caches and open pages cannot keep showing the old copy
    images.write_media(photo.public_path, processed.public_jpeg)
    images.write_media(photo.thumb_path, processed.thumb_jpeg)
    photo.redacted = True
    audit.record("tip.photo_redact", target=photo, after={"box": list(box)})
    db.session.commit()
    images.delete_media(old_public, old_thumb)
    return photo


def _resolved_per_unit(start: date, end: date) -> list[Any]:
    """(unit id, average seconds from submission to 已办结, tips) for tips resolved in the Beijing days start..end."""
    lo = datetime(start.year, start.month, start.day, tzinfo=LOCAL_TZ)
    hi = datetime(end.year, end.month, end.day, tzinfo=LOCAL_TZ) + timedelta(days=1)
    resolved = (
        sa.select(TipStatusChange.tip_id, sa.func.max(TipStatusChange.at).label("at"))
        .where(TipStatusChange.to_status == TipStatus.RESOLVED, TipStatusChange.at >= lo, TipStatusChange.at < hi)
        .group_by(TipStatusChange.tip_id)
        .subquery()
    )
    if db.engine.dialect.name == "sqlite":  # the demo's database has no interval arithmetic
        seconds = sa.func.avg((sa.func.julianday(resolved.c.at) - sa.func.julianday(Tip.created_at)) * 86400)
    else:
        seconds = sa.func.avg(sa.extract("epoch", resolved.c.at - Tip.created_at))
    return list(
        db.session.execute(
            sa.select(Tip.unit_id, seconds, sa.func.count())
            .join(resolved, resolved.c.tip_id == Tip.id)
            .group_by(Tip.unit_id)
        )
    )


def _handling(start: date, end: date) -> dict[str, dict[int | None, float]]:
    """Each unit's average handling hours and how many tips it is of, from one query: the scoreboard wants both."""
    rows = [(unit_id, avg, n) for unit_id, avg, n in _resolved_per_unit(start, end) if avg is not None]
    return {
        targets.AVERAGED: {unit_id: round(float(avg) / 3600, 1) for unit_id, avg, _ in rows},
        targets.AVERAGED_WEIGHT: {unit_id: float(n) for unit_id, _, n in rows},
    }


targets.register_counters((targets.AVERAGED, targets.AVERAGED_WEIGHT), _handling)
