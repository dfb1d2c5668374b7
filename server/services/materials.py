"""Material library (素材库): officers' photos from the scene → curated, processed, uploaded to WeChat.

Ways in: a bound officer's chat photo (`receive_chat_image`, the download runs in a task) and the mobile upload page
(`upload_photo`, one request per photo, deduplicated by client id and SHA-256). A text or location the officer sends
within PAIR_WINDOW of a burst of photos becomes the caption / position of the photos sent since the previous text or
location (their scene: the officer walks on and photographs the next one within the window). Processing (`render`)
decodes an original once (JPEG draft: DCT-domain downscale), shrinks that once, and cuts every requested rendition from
the shrunk copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import imagehash
import requests
import sqlalchemy as sa
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from redis.exceptions import RedisError
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from wechatpy.exceptions import WeChatClientException

from models import (
    MaterialItem,
    MaterialRendition,
    MaterialSource,
    MaterialState,
    Role,
    Staff,
    Unit,
    UploadState,
    WechatImage,
    utcnow,
)
from models.material import UPLOAD_STALE
from server.extensions import db, get_redis
from server.filters import LOCAL_TZ, local_dt
from server.inputs import to_int
from server.services import ServiceError, audit, images, targets
from server.wechat.client import TOKEN_ERRORS, describe, get_client

log = logging.getLogger(__name__)

PAIR_WINDOW = timedelta(minutes=5)
BURST_LOOKBACK = timedelta(hours=2)  # how far back the rows are read for a burst when Redis is down
BURST_KEY = "materials:burst:{}"  # openid → burst start (epoch seconds); its TTL slides with each photo
COUNT_KEY = "materials:count:{}"  # openid → photos of the burst not yet captioned or placed
GROUP_DISTANCE = 6  # phash Hamming distance: at most this far apart is "the same shot"
GROUP_SPAN = timedelta(hours=1)
CAPTION_MAX, ADDRESS_MAX, TAG_MAX, TAGS_MAX = 500, 200, 16, 10
MIN_QUALITY = 30  # below this JPEG blocks show; a rendition that does not fit is shrunk instead
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


@dataclass(frozen=True)
class Purpose:
    """An output WeChat takes: box (w, h) — a ratio to crop to when `crop`, else a bound —, byte limit, upload kind."""

    name: str
    label: str
    size: tuple[int, int]
    crop: bool
    max_bytes: int
    kind: str  # image / thumb: material/add_material; uploadimg: media/uploadimg (a URL, no media_id)


PURPOSES = {
    p.name: p
    for p in (
        Purpose("cover", "封面 2.35:1", (900, 383), True, 10 << 20, "image"),
        Purpose("thumb", "缩略图 1:1", (300, 300), True, 64 << 10, "thumb"),
        Purpose("article", "正文图", (1080, 1080), False, 1 << 20, "uploadimg"),
        Purpose("image", "图片素材", (1920, 1920), False, 10 << 20, "image"),
    )
}
POSITIONS = {"br": "右下", "bl": "左下", "tr": "右上", "tl": "左上", "center": "居中"}
PAGE_SIZE = 200  # photos per page of the library (near-duplicates folded after paging)
EDIT_FIELDS = ("caption", "tags", "address")

audit.ACTION_LABELS.update(
    {
        "material.edit": "修改素材说明、标签或地址",
        "material.star": "素材加星标",
        "material.unstar": "素材取消星标",
        "material.process": "加工素材",
        "material.upload": "加工素材并上传到微信",
        "material.upload_retry": "重试上传到微信",
        "material.delete": "删除素材",
    }
)
DELETE_REASON_MAX = 200


def _enqueue(task: Any, *args: Any) -> None:
    """After the commit. Eager mode (tests, demo) runs it here: its failure must not undo the caller's work."""
    try:
        task.delay(*args)
    except Exception:  # noqa: BLE001  (logged; the row keeps its state for another try)
        log.exception("task %s failed when enqueued", getattr(task, "name", task))


def _clean(value: Any, limit: int) -> str | None:
    text = " ".join(str(value or "").split())
    return text[:limit] or None


# -- who may send ----------------------------------------------------------------------------------------------------


def officer_by_openid(openid: str) -> Staff | None:
    """A bound, active officer (chat photos from anyone else are not material)."""
    stmt = sa.select(Staff).where(Staff.openid == openid, Staff.role == Role.OFFICER, Staff.active.is_(True))
    return db.session.scalar(stmt)


def uploader_by_openid(openid: str) -> Staff | None:
    """Any bound, active staff member may use the upload page."""
    return db.session.scalar(sa.select(Staff).where(Staff.openid == openid, Staff.active.is_(True)))


# -- chat ------------------------------------------------------------------------------------------------------------


def _insert(item: MaterialItem) -> tuple[MaterialItem, bool]:
    """Insert once per key (and per uploader+sha256); a retry gets the first row back."""
    db.session.add(item)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        stmt = sa.select(MaterialItem).where(
            sa.or_(
                MaterialItem.key == item.key,
                sa.and_(MaterialItem.uploader_id == item.uploader_id, MaterialItem.sha256 == item.sha256)
                if item.sha256
                else sa.false(),
            )
        )
        if (first := db.session.scalars(stmt).first()) is None:
            raise
        return first, False
    return item, True


def _count_in_burst(officer: Staff, at: datetime) -> int:
    redis, ttl, openid = get_redis(), int(PAIR_WINDOW.total_seconds()), officer.openid or ""
    pipe = redis.pipeline()
    pipe.set(BURST_KEY.format(openid), int(at.timestamp()), nx=True)
    pipe.expire(BURST_KEY.format(openid), ttl)
    pipe.incr(COUNT_KEY.format(openid))
    pipe.expire(COUNT_KEY.format(openid), ttl)
    try:
        return int(pipe.execute()[2])
    except RedisError:  # Redis down: the rows say the same, a query instead of a round trip
        from server.services import chat  # imports this module

        chat.pointer_lost()
        return len(_new_scene(_burst_from_rows(officer, at)))


def _burst_from_rows(officer: Staff, now: datetime) -> list[MaterialItem]:
    """The burst as the rows tell it (Redis down): the officer's chat photos back from `now`, each within
    PAIR_WINDOW of the next, as the burst key's TTL slides with each photo."""
    stmt = (
        sa.select(MaterialItem)
        .where(
            MaterialItem.uploader_id == officer.id,
            MaterialItem.source == MaterialSource.CHAT,
            MaterialItem.received_at > now - BURST_LOOKBACK,
        )
        .order_by(MaterialItem.received_at.desc(), MaterialItem.id.desc())
        .limit(200)
    )
    burst, edge = [], now
    for item in db.session.scalars(stmt):
        if edge - item.received_at > PAIR_WINDOW:
            break
        burst.append(item)
        edge = item.received_at
    return sorted(burst, key=lambda i: i.id)


def repoint_bursts() -> None:
    """After Redis lost its data: the bursts the rows still show open get their keys back, with the time left."""
    now = utcnow()
    recent = sa.select(MaterialItem.uploader_id).where(
        MaterialItem.source == MaterialSource.CHAT, MaterialItem.received_at > now - PAIR_WINDOW
    )
    for officer in db.session.scalars(sa.select(Staff).where(Staff.id.in_(recent), Staff.openid.is_not(None))):
        if not (burst := _burst_from_rows(officer, now)):
            continue
        ttl = max(int((PAIR_WINDOW - (now - max(i.received_at for i in burst))).total_seconds()), 1)
        pipe = get_redis().pipeline()  # NX: a photo counted meanwhile wrote newer values than these rows had
        pipe.set(BURST_KEY.format(officer.openid), int(min(i.received_at for i in burst).timestamp()), ex=ttl, nx=True)
        pipe.set(COUNT_KEY.format(officer.openid), len(_new_scene(burst)), ex=ttl, nx=True)
        pipe.execute()


def receive_chat_image(officer: Staff, media_id: str, at: datetime) -> str:
    """An officer's chat photo: a pending item now, the download in a task; the reply counts the burst."""
    item, created = _insert(
        MaterialItem(
            key=f"chat:{media_id[:90]}",
            source=MaterialSource.CHAT,
            uploader_id=officer.id,
            unit_id=officer.unit_id,
            media_id=media_id[:128],
            received_at=at,
            tags=[],
        )
    )
    if created:
        from server.tasks import materials as tasks

        _enqueue(tasks.fetch_chat_photo, item.id)
    n = _count_in_burst(officer, at)
    return (
        f"已收到 {n} 张现场照片，已存入素材库。\n"
        f"{int(PAIR_WINDOW.total_seconds() // 60)} 分钟内发送的文字和位置将作为这些照片的说明和地点。"
    )


def _burst_items(openid: str) -> tuple[Staff, list[MaterialItem]] | None:
    """The officer's photos of the current burst; None (one Redis GET) when there is no burst."""
    try:
        raw = get_redis().get(BURST_KEY.format(openid))
    except RedisError:  # Redis down: the rows decide (chat.open_flows sends every text here then)
        officer = officer_by_openid(openid)
        return (officer, burst) if officer and (burst := _burst_from_rows(officer, utcnow())) else None
    if raw is None:
        return None
    officer = officer_by_openid(openid)
    if officer is None:
        return None
    since = datetime.fromtimestamp(int(raw), LOCAL_TZ) - timedelta(seconds=1)
    stmt = sa.select(MaterialItem).where(
        MaterialItem.uploader_id == officer.id,
        MaterialItem.source == MaterialSource.CHAT,  # the upload page's photos carry their own caption and place
        MaterialItem.received_at >= since,
    )
    return officer, list(db.session.scalars(stmt.order_by(MaterialItem.id)))


def _new_scene(items: list[MaterialItem]) -> list[MaterialItem]:
    """The photos of a burst sent since its last caption or place (none yet: all of them)."""
    return [i for i in items if i.scene_id is None]


def _scene(openid: str, items: list[MaterialItem]) -> list[MaterialItem]:
    """The photos of a burst a caption or place is for: those sent since the previous caption or place, which form a
    scene from now on; if there are none, the scene the previous caption or place was for (photos, a place, a text).
    An officer on patrol photographs the next scene within minutes: its caption and place are not the last one's."""
    if fresh := _new_scene(items):
        scene_id = min(i.id for i in fresh)
        for item in fresh:
            item.scene_id = scene_id
        try:  # the next photo starts the count again
            get_redis().delete(COUNT_KEY.format(openid))
        except RedisError:
            from server.services import chat  # imports this module

            chat.pointer_lost()
        return fresh
    last = max(i.scene_id or 0 for i in items)
    return [i for i in items if i.scene_id == last]


def lost_of(items: list[MaterialItem]) -> list[MaterialItem]:
    """The photos that did not make it into the library, but for copies of one that did (nothing to send again)."""
    return [i for i in items if i.state is MaterialState.FAILED and not _copy_of(i)]


def _told_in_reply(scene: list[MaterialItem]) -> None:
    """The reply about to go out names the scene's lost photos: lost_photos will not tell the officer again."""
    from server.services import lost_photos  # imports this module

    lost_photos.told_in_reply(lost_of(scene))


def _burst_count(items: list[MaterialItem], photos: list[MaterialItem]) -> str:
    """「N 张照片」 of a burst, and the photos that did not make it into the library with why: by the time the
    officer sends a caption or a place the downloads are usually done (those lost later, lost_photos tells)."""
    failed = [i for i in items if i.state is MaterialState.FAILED]
    copies = [i for i in failed if _copy_of(i)]  # already in the library: nothing to resend
    lost = lost_of(items)
    counted = f"{len(photos)} 张照片"
    notes = []
    if copies:
        notes.append(f"其中 {len(copies)} 张素材库中已有，未重复保存")
    if lost:
        notes.append(f"另有 {len(lost)} 张未能存入素材库：{why_lost(lost)}，请重新发送")
    return f"{counted}（{'；'.join(notes)}）" if notes else counted


def why_lost(lost: list[MaterialItem]) -> str:
    """Why these photos were refused, each reason once, without the advice the upload page gives with it."""
    return "；".join(dict.fromkeys((i.error or "照片无法处理").split("，请")[0] for i in lost))


def _nothing_kept(scene: list[MaterialItem], what: str, resend: str) -> str:
    """The reply to a caption or place for photos none of which made it into the library: it is not saved."""
    return (
        f"刚发送的 {len(scene)} 张照片未能存入素材库（{why_lost(scene)}），"
        f"{what}没有保存，请重新发送照片后再发送{resend}。"
    )


def _copy_of(item: MaterialItem) -> int | None:
    """The library photo a photo refused as a copy is the same as (its id is in the reason _ingest wrote)."""
    error = item.error or ""
    if item.state is not MaterialState.FAILED or not error.startswith(COPY_OF):
        return None
    return to_int(error[len(COPY_OF) :].split(" ", 1)[0], lo=1)


def _library_photos(items: list[MaterialItem]) -> list[MaterialItem]:
    """The library photos a burst stands for: those kept, and those its copies are the same as (a caption or place
    sent for a copy is for the photo in the library)."""
    kept = [i for i in items if i.state is not MaterialState.FAILED]
    ids = {i for item in items if (i := _copy_of(item)) is not None} - {i.id for i in kept}
    return kept + (list(db.session.scalars(sa.select(MaterialItem).where(MaterialItem.id.in_(ids)))) if ids else [])


def attach_chat_text(openid: str, text: str) -> str | None:
    """A text right after photos is their caption (those sent since the previous caption or place); None when no
    burst is open (one Redis GET)."""
    found = _burst_items(openid)
    if not found or not found[1] or not (caption := _clean(text, CAPTION_MAX)):
        return None
    scene = _scene(openid, found[1])
    _told_in_reply(scene)
    if not (photos := _library_photos(scene)):
        db.session.commit()
        return _nothing_kept(scene, f"说明「{caption}」", "说明")
    for item in photos:
        item.caption = _clean(f"{item.caption} {caption}" if item.caption else caption, CAPTION_MAX)
    db.session.commit()
    # Every text for the same photos adds to their captions: the officer should know, and where to change them.
    added = f"已为 {_burst_count(scene, photos)}添加说明：「{caption}」。"
    return added + "5 分钟内再发的文字会接在后面；如需修改，请在后台素材库中编辑。"


def attach_chat_location(openid: str, latitude: Any, longitude: Any, label: str | None) -> str | None:
    """A location right after photos is where they were taken (those sent since the previous caption or place);
    None when no burst is open."""
    found = _burst_items(openid)
    if not found or not found[1]:
        return None
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        lat = lng = math.nan
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return "位置信息有误，请重新发送位置。"
    scene = _scene(openid, found[1])
    _told_in_reply(scene)
    if not (photos := _library_photos(scene)):
        db.session.commit()
        return _nothing_kept(scene, "位置", "位置")
    sent = {i.id for i in scene}
    for item in photos:
        if item.id in sent or not item.has_point:  # an earlier photo's own place stays
            item.latitude, item.longitude, item.address = lat, lng, _clean(label, ADDRESS_MAX)
    db.session.commit()
    where = f"：{_clean(label, ADDRESS_MAX)}" if label else ""
    return f"已为 {_burst_count(scene, photos)}记录位置{where}。"


def stalled_items(now: datetime | None = None) -> tuple[list[int], list[int]]:
    """Photos still pending after their tasks should have finished (an outage outlasted the retries, or the broker
    was down when they were queued): (chat photos to download, uploads to derive)."""
    from server.services.tips import CHAT_MEDIA_LIFETIME, STALLED_AFTER

    now = now or utcnow()
    pending = sa.select(MaterialItem.id).where(
        MaterialItem.state == MaterialState.PENDING,
        MaterialItem.received_at.between(now - CHAT_MEDIA_LIFETIME, now - STALLED_AFTER),
    )
    downloads = db.session.scalars(
        pending.where(MaterialItem.original_path.is_(None), MaterialItem.media_id.is_not(None)).limit(200)
    )
    derivations = db.session.scalars(pending.where(MaterialItem.original_path.is_not(None)).limit(200))
    return list(downloads), list(derivations)


EXPIRED = "微信照片已过期或不存在"


def expire_stalled_items(now: datetime | None = None) -> int:
    """Chat photos still not downloaded when WeChat has forgotten them: refused, so that they leave 处理中 and are
    listed among those not saved (the officer can send them again). Returns how many."""
    from server.services.tips import CHAT_MEDIA_LIFETIME

    now = now or utcnow()
    expired = db.session.execute(
        sa.update(MaterialItem)
        .where(
            MaterialItem.state == MaterialState.PENDING,
            MaterialItem.original_path.is_(None),
            MaterialItem.media_id.is_not(None),
            MaterialItem.received_at < now - CHAT_MEDIA_LIFETIME,
        )
        .values(state=MaterialState.FAILED, error=EXPIRED)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return expired


def fetch_chat_photo(item_id: int) -> None:
    """Task body: download an officer's chat photo, verify, store, derive. Idempotent; transient errors raise."""
    item = db.session.get(MaterialItem, item_id)
    if item is None or item.state is not MaterialState.PENDING or not item.media_id:
        return
    try:
        res = get_client().media.download(item.media_id)
        data = res.content if hasattr(res, "content") else b""
        _ingest(item, data[: images.MAX_BYTES + 1])
    except WeChatClientException as exc:
        if exc.errcode not in (40007, 41006):
            raise
        _fail(item, EXPIRED)


# -- upload page -----------------------------------------------------------------------------------------------------


def _point(latitude: Any, longitude: Any) -> tuple[float | None, float | None]:
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        return None, None
    return (lat, lng) if -90 <= lat <= 90 and -180 <= lng <= 180 else (None, None)


def upload_photo(
    uploader: Staff,
    data: bytes,
    *,
    client_id: str,
    caption: str | None = None,
    latitude: Any = None,
    longitude: Any = None,
    address: str | None = None,
) -> tuple[MaterialItem, bool]:
    """One photo from the upload page. A retry (same client id) or the same bytes again returns the first item."""
    client_id = "".join(c for c in client_id if c.isalnum() or c in "-_")[:64]
    if len(client_id) < 8:
        raise ServiceError("上传请求无效，请刷新页面后重试")
    sha = hashlib.sha256(data).hexdigest()
    stmt = sa.select(MaterialItem).where(
        sa.or_(
            MaterialItem.key == f"upload:{client_id}",
            sa.and_(MaterialItem.uploader_id == uploader.id, MaterialItem.sha256 == sha),
        )
    )
    if (existing := db.session.scalars(stmt).first()) is not None:
        _add_details(existing, caption, latitude, longitude, address)  # a retry's are there already
        return existing, False
    mime = images.verify_image(data)  # a refusal is an ImageRejected (a ServiceError) with the reason
    lat, lng = _point(latitude, longitude)
    relative = images.original_path_for(sha, mime)
    images.write_media(relative, data)
    item, created = _insert(
        MaterialItem(
            key=f"upload:{client_id}",
            source=MaterialSource.UPLOAD,
            uploader_id=uploader.id,
            unit_id=uploader.unit_id,
            received_at=utcnow(),
            sha256=sha,
            mime=mime,
            original_path=relative,
            caption=_clean(caption, CAPTION_MAX),
            latitude=lat,
            longitude=lng if lat is not None else None,
            address=_clean(address, ADDRESS_MAX),
            tags=[],
        )
    )
    if created:
        from server.tasks import materials as tasks

        _enqueue(tasks.derive_item, item.id)
    return item, created


def _add_details(item: MaterialItem, caption: str | None, latitude: Any, longitude: Any, address: str | None) -> None:
    """A photo the library has, uploaded again with a caption or place (it went up without them, or by chat): they are
    for it, as a chat caption for a copy is; its own caption is kept before the new one, its own place stays."""
    if (text := _clean(caption, CAPTION_MAX)) and text not in (item.caption or ""):
        item.caption = _clean(f"{item.caption} {text}" if item.caption else text, CAPTION_MAX)
    lat, lng = _point(latitude, longitude)
    if lat is not None and not item.has_point:
        item.latitude, item.longitude = lat, lng
    if not item.address:
        item.address = _clean(address, ADDRESS_MAX)
    db.session.commit()


# -- derive: public copy, thumbnail, perceptual hash, group ---------------------------------------------------------


def _fail(item: MaterialItem, error: str) -> None:
    log.info("material item %s refused: %s", item.id, error)
    item.state, item.error = MaterialState.FAILED, error[:200]
    db.session.commit()


def _ingest(item: MaterialItem, data: bytes) -> None:
    try:
        mime = images.verify_image(data)
    except images.ImageRejected as exc:
        _fail(item, str(exc))
        return
    sha = hashlib.sha256(data).hexdigest()
    dup = db.session.scalar(
        sa.select(MaterialItem.id).where(
            MaterialItem.uploader_id == item.uploader_id, MaterialItem.sha256 == sha, MaterialItem.id != item.id
        )
    )
    if dup is not None:
        _fail(item, f"{COPY_OF}{dup} 是同一张照片")
        return
    item.sha256, item.mime, item.original_path = sha, mime, images.original_path_for(sha, mime)
    images.write_media(item.original_path, data)
    db.session.commit()
    derive_item(item.id)


def derive_item(item_id: int) -> None:
    """Task body: the public copy and thumbnail (upright, no EXIF), the perceptual hash and the group."""
    item = db.session.get(MaterialItem, item_id)
    if item is None or item.state is not MaterialState.PENDING or not item.original_path:
        return
    try:
        processed = images.process_image(images.media_path(item.original_path).read_bytes())
    except images.ImageRejected as exc:
        _fail(item, str(exc))
        return
    item.public_path = f"materials/{item.sha256[:2]}/{item.sha256}.jpg"
    item.thumb_path = f"materials/{item.sha256[:2]}/{item.sha256}.thumb.jpg"
    images.write_media(item.public_path, processed.public_jpeg)
    images.write_media(item.thumb_path, processed.thumb_jpeg)
    item.width, item.height = processed.width, processed.height
    with Image.open(io.BytesIO(processed.thumb_jpeg)) as thumb:
        item.phash = str(imagehash.phash(thumb))
    item.group_id = _group_for(item)
    item.state, item.error = MaterialState.READY, None
    db.session.commit()


def _group_for(item: MaterialItem) -> int:
    """Join the group of a near-identical photo by the same officer within the hour; else start one."""
    mine = imagehash.hex_to_hash(item.phash)
    stmt = sa.select(MaterialItem).where(
        MaterialItem.uploader_id == item.uploader_id,
        MaterialItem.id != item.id,
        MaterialItem.phash.is_not(None),
        MaterialItem.received_at.between(item.received_at - GROUP_SPAN, item.received_at + GROUP_SPAN),
    )
    for other in db.session.scalars(stmt.order_by(MaterialItem.id)):
        if mine - imagehash.hex_to_hash(other.phash) <= GROUP_DISTANCE:
            return other.group_id or other.id
    return item.id


# -- curation --------------------------------------------------------------------------------------------------------


def parse_tags(raw: str | Iterable[str]) -> list[str]:
    parts = raw.replace("，", ",").replace(" ", ",").split(",") if isinstance(raw, str) else list(raw)
    tags: list[str] = []
    for part in parts:
        tag = _clean(part, TAG_MAX)
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:TAGS_MAX]


def edit_token(item: MaterialItem) -> str:
    """What the edit form was filled from: a save based on anything else would overwrite someone's change unseen."""
    fields = json.dumps(audit.snapshot(item, EDIT_FIELDS), ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(fields.encode()).hexdigest()[:16]


def edit_item(
    item: MaterialItem, *, caption: str | None, tags: str, address: str | None = None, base: str | None = None
) -> MaterialItem:
    """An editor's caption, tags and address; what changed is audited (a save that changes nothing is not).
    `base`: the edit_token the form was filled from; refused if the item changed since."""
    db.session.refresh(item, with_for_update=True)  # two editors at once: one after the other
    wanted = {"caption": _clean(caption, CAPTION_MAX), "tags": parse_tags(tags), "address": item.address}
    if address is not None:
        wanted["address"] = _clean(address, ADDRESS_MAX)
    before = audit.snapshot(item, EDIT_FIELDS)
    # A page changed since it was filled in is refused, unless it asks for what is there already (a double click).
    if base is not None and base != edit_token(item) and wanted != before:
        db.session.rollback()
        raise ServiceError("这张照片的说明或标签刚被他人修改，请查看后再保存")
    item.caption, item.tags, item.address = wanted["caption"], wanted["tags"], wanted["address"]
    after = audit.snapshot(item, EDIT_FIELDS)
    if changed := [name for name in EDIT_FIELDS if before[name] != after[name]]:
        audit.record(
            "material.edit",
            target=item,
            before={name: before[name] for name in changed},
            after={name: after[name] for name in changed},
        )
    db.session.commit()
    return item


def set_starred(item_ids: Iterable[int], starred: bool, visible_units: list[int] | None) -> int:
    """Star or unstar the selected photos the caller may see; each photo that changes is audited. Returns how many."""
    ids = list(item_ids)[:PAGE_SIZE]
    stmt = sa.select(MaterialItem).where(MaterialItem.id.in_(ids), MaterialItem.starred != starred)
    if visible_units is not None:
        stmt = stmt.where(MaterialItem.unit_id.in_(visible_units))
    items = list(db.session.scalars(stmt.order_by(MaterialItem.id).with_for_update()))
    note = f"批量选择 {len(ids)} 张" if len(ids) > 1 else None
    for item in items:
        item.starred = starred
        audit.record(
            "material.star" if starred else "material.unstar",
            target=item,
            before={"starred": not starred},
            after={"starred": starred},
            note=note,
        )
    db.session.commit()
    return len(items)


def delete_item(item_id: int, reason: str) -> str:
    """Take a photo out of the library for good (sent by mistake, a private picture, a face that must not be kept):
    its row, processed copies and files, audited with the reason. Copies already in articles are the articles' own
    and stay. Its near-duplicates and scene go on under their next photo. Returns what the photo was, for the page."""
    reason = " ".join((reason or "").split())
    if not 2 <= len(reason) <= DELETE_REASON_MAX:
        raise ServiceError(f"请填写删除原因（2–{DELETE_REASON_MAX} 字），会记入操作日志")
    item = db.session.get(MaterialItem, item_id, with_for_update=True, populate_existing=True)
    if item is None:
        db.session.rollback()
        raise ServiceError("这张照片不存在或已被删除")
    label = f"#{item.id}（{item.uploader.name}，{local_dt(item.received_at)}）"
    files = {item.original_path, item.public_path, item.thumb_path, *(r.path for r in item.renditions)} - {None}
    for column in (MaterialItem.group_id, MaterialItem.scene_id):  # both name the first photo of theirs
        rest = list(db.session.scalars(sa.select(MaterialItem.id).where(column == item.id, MaterialItem.id != item.id)))
        if rest:
            db.session.execute(sa.update(MaterialItem).where(MaterialItem.id.in_(rest)).values({column: min(rest)}))
    audit.record(
        "material.delete",
        target=item,
        before={
            "uploader": item.uploader.name,
            "received_at": local_dt(item.received_at),
            "caption": item.caption,
            "used_in_article": item.used_in_article,
        },  # fmt: skip
        after={"reason": reason},
    )
    db.session.delete(item)
    db.session.commit()
    # Files named by the photo's content are shared with the same photo sent by another officer.
    paths = (MaterialItem.original_path, MaterialItem.public_path, MaterialItem.thumb_path)
    shared = set(db.session.scalars(sa.union(*(sa.select(p).where(p.in_(files)) for p in paths))))
    images.delete_media(*(files - shared))
    return label


def request_processing(item: MaterialItem, recipe: Recipe) -> None:
    """An editor asks for a rendition: audited now, made by a worker."""
    if item.state is not MaterialState.READY:
        raise ServiceError("素材尚未处理完成")
    audit.record("material.process", target=item, after=recipe.as_dict())
    db.session.commit()
    from server.tasks import materials as tasks

    tasks.render_item.delay(item.id, recipe.as_dict())


def mark_used(item_ids: Iterable[int], article_id: int, *, commit: bool = True) -> int:
    """Publishing calls this when an article that uses these photos goes out; the first article is kept.
    `commit=False`: part of the caller's transaction (publishing marks them in the commit that publishes)."""
    ids = list(item_ids)
    if not ids:
        return 0
    now = utcnow()
    db.session.execute(
        sa.update(MaterialItem)
        .where(MaterialItem.id.in_(ids), MaterialItem.article_id.is_(None))
        .values(article_id=article_id, used_at=now)
    )
    count = db.session.execute(
        sa.update(MaterialItem).where(MaterialItem.id.in_(ids)).values(used_in_article=True)
    ).rowcount
    if commit:
        db.session.commit()
    return count


@dataclass
class MaterialFilter:
    unit_id: int | None = None
    uploader_id: int | None = None
    day_from: date | None = None
    day_to: date | None = None
    tag: str | None = None
    used: bool | None = None
    starred: bool = False

    def as_dict(self) -> dict[str, str]:
        out = {
            "unit": str(self.unit_id or ""),
            "officer": str(self.uploader_id or ""),
            "from": self.day_from.isoformat() if self.day_from else "",
            "to": self.day_to.isoformat() if self.day_to else "",
            "tag": self.tag or "",
            "used": "" if self.used is None else ("1" if self.used else "0"),
            "starred": "1" if self.starred else "",
        }
        return {k: v for k, v in out.items() if v}


def _day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def parse_filter(args: Mapping[str, str]) -> MaterialFilter:
    used = args.get("used")
    return MaterialFilter(
        unit_id=to_int(args.get("unit"), lo=1),
        uploader_id=to_int(args.get("officer"), lo=1),
        day_from=_day(args.get("from")),
        day_to=_day(args.get("to")),
        tag=_clean(args.get("tag"), TAG_MAX),
        used=None if used not in ("0", "1") else used == "1",
        starred=args.get("starred") == "1",
    )


def _local_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), LOCAL_TZ)


def _where(f: MaterialFilter, visible_units: list[int] | None, *, failed: bool = False) -> list[Any]:
    refused = MaterialItem.state == MaterialState.FAILED
    where: list[Any] = [refused if failed else sa.not_(refused)]
    if visible_units is not None:
        where.append(MaterialItem.unit_id.in_(visible_units))
    if f.unit_id:  # a district takes in its squads, as the liaisons' reach and the tips' filter do
        from server.services import staff as staff_service

        where.append(MaterialItem.unit_id.in_(staff_service.unit_and_descendants(f.unit_id)))
    if f.uploader_id:
        where.append(MaterialItem.uploader_id == f.uploader_id)
    if f.day_from:
        where.append(MaterialItem.received_at >= _local_start(f.day_from))
    if f.day_to:
        where.append(MaterialItem.received_at < _local_start(f.day_to + timedelta(days=1)))
    if f.used is not None:
        where.append(MaterialItem.used_in_article.is_(f.used))
    if f.starred:
        where.append(MaterialItem.starred.is_(True))
    if f.tag:
        where.append(_has_tag(f.tag))
    return where


@dataclass
class Group:
    lead: MaterialItem
    members: list[MaterialItem]


def _has_tag(tag: str) -> sa.ColumnElement[bool]:
    """`tags` (a JSON list) holds `tag` exactly: jsonb containment on PostgreSQL, json_each on SQLite."""
    if db.engine.dialect.name == "postgresql":
        return sa.cast(MaterialItem.tags, postgresql.JSONB).contains([tag])
    each = sa.func.json_each(MaterialItem.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))


def _rows(
    f: MaterialFilter, visible_units: list[int] | None, *, after_id: int, before_id: int | None, limit: int
) -> list[MaterialItem]:
    """Matching rows, newest first. Every filter is in the SQL, so the limit counts only what matches."""
    stmt = (
        sa.select(MaterialItem)
        .options(selectinload(MaterialItem.uploader), selectinload(MaterialItem.unit))
        .where(*_where(f, visible_units))
    )
    if after_id:  # a feed catching up: the oldest `limit` after its cursor, so that nothing is skipped
        stmt = stmt.where(MaterialItem.id > after_id).order_by(MaterialItem.id)
    else:
        if before_id:
            stmt = stmt.where(MaterialItem.id < before_id)
        stmt = stmt.order_by(MaterialItem.id.desc())
    rows = list(db.session.scalars(stmt.limit(limit)))
    return rows[::-1] if after_id else rows


def _grouped(rows: list[MaterialItem]) -> list[Group]:
    groups: dict[int, Group] = {}
    for row in rows:
        key = row.group_id or row.id
        if key in groups:
            groups[key].members.append(row)
        else:
            groups[key] = Group(row, [row])
    return list(groups.values())


def search(
    f: MaterialFilter, visible_units: list[int] | None, *, after_id: int = 0, limit: int = PAGE_SIZE
) -> list[Group]:
    """Newest first, near-duplicates folded into one group (shown by its newest photo). With `after_id`: the
    `limit` photos that came next after it (a live feed advances its cursor to their newest and asks again)."""
    return _grouped(_rows(f, visible_units, after_id=after_id, before_id=None, limit=limit))


def search_page(
    f: MaterialFilter, visible_units: list[int] | None, *, before_id: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[Group], int | None]:
    """A page of the library, newest first (keyset: photos older than `before_id`), and the cursor of the next
    page (None on the last). A group cut by a page boundary shows on both pages."""
    rows = _rows(f, visible_units, after_id=0, before_id=before_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return _grouped(rows), (rows[-1].id if more else None)


def settled(item_ids: Iterable[int], visible_units: list[int] | None) -> tuple[list[MaterialItem], list[int]]:
    """Of photos a page shows as still processing: those processed since, and the ids of those refused (they will
    not be in the library). Those still processing, and another unit's, are in neither."""
    ids = list(dict.fromkeys(item_ids))[:PAGE_SIZE]
    stmt = (
        sa.select(MaterialItem)
        .options(selectinload(MaterialItem.uploader), selectinload(MaterialItem.unit))
        .where(MaterialItem.id.in_(ids), MaterialItem.state != MaterialState.PENDING)
    )
    if visible_units is not None:
        stmt = stmt.where(MaterialItem.unit_id.in_(visible_units))
    rows = list(db.session.scalars(stmt.order_by(MaterialItem.id))) if ids else []
    return [i for i in rows if i.state is MaterialState.READY], [i.id for i in rows if i.state is MaterialState.FAILED]


COPY_OF = "与素材 #"  # starts the reason of a photo refused as a copy of one kept: it is in the library
FAILURES_SHOWN = 50
FAILURES_DAYS = 7  # without a date filter, the photos refused this long ago or since


def recent_failures(f: MaterialFilter, visible_units: list[int] | None) -> tuple[list[MaterialItem], int]:
    """Photos that did not make it into the library (expired in WeChat, not an image), newest first, and how many
    there are: an editor looking for a photo an officer says was sent finds it here. Copies of a photo kept are not
    among them (asking the officer to send it again would make another copy). Within the filter's dates, else the
    last FAILURES_DAYS days."""
    where = _where(f, visible_units, failed=True)
    where.append(sa.or_(MaterialItem.error.is_(None), sa.not_(MaterialItem.error.startswith(COPY_OF))))
    if not (f.day_from or f.day_to):
        where.append(MaterialItem.received_at >= utcnow() - timedelta(days=FAILURES_DAYS))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(MaterialItem).where(*where)) or 0
    if not total:
        return [], 0
    stmt = (
        sa.select(MaterialItem)
        .options(selectinload(MaterialItem.uploader), selectinload(MaterialItem.unit))
        .where(*where)
        .order_by(MaterialItem.id.desc())
        .limit(FAILURES_SHOWN)
    )
    return list(db.session.scalars(stmt)), total


def weekly_counts(visible_units: list[int] | None, weeks: int = 8) -> list[dict[str, Any]]:
    """Photos per (ISO week, unit, officer) and how many of them were used in articles."""
    since = utcnow() - timedelta(weeks=weeks)
    # Four columns a photo, not the photos with their officer and unit: a busy bureau has tens of thousands.
    stmt = sa.select(
        MaterialItem.received_at, MaterialItem.unit_id, MaterialItem.uploader_id, MaterialItem.used_in_article
    ).where(MaterialItem.received_at >= since, MaterialItem.state != MaterialState.FAILED)
    if visible_units is not None:
        stmt = stmt.where(MaterialItem.unit_id.in_(visible_units))
    counts: dict[tuple[str, int | None, int], list[int]] = {}
    for received_at, unit_id, uploader_id, used in db.session.execute(stmt):
        year, week, _ = received_at.astimezone(LOCAL_TZ).isocalendar()
        count = counts.setdefault((f"{year}-W{week:02d}", unit_id, uploader_id), [0, 0])
        count[0] += 1
        count[1] += int(used)
    units = dict(db.session.execute(sa.select(Unit.id, Unit.name)).all())
    officers = {k[2] for k in counts}
    names = dict(db.session.execute(sa.select(Staff.id, Staff.name).where(Staff.id.in_(officers))).all())
    table = [
        {"week": week, "unit": units.get(unit_id, "—"), "officer": names[uploader_id], "photos": n, "used": used}
        for (week, unit_id, uploader_id), (n, used) in counts.items()
    ]
    return sorted(table, key=lambda r: (r["week"], r["unit"], r["officer"]), reverse=True)


# -- use in articles -------------------------------------------------------------------------------------------------

PICK_PAGE = 24  # photos per page of the article editor's picker


def pickable_page(
    f: MaterialFilter, visible_units: list[int] | None, *, before_id: int | None = None, limit: int = PICK_PAGE
) -> tuple[list[MaterialItem], int | None]:
    """Processed photos for the article editor, newest first, one by one (a near-duplicate may be the better shot);
    keyset paging as search_page."""
    stmt = (
        sa.select(MaterialItem)
        .options(selectinload(MaterialItem.unit))
        .where(*_where(f, visible_units), MaterialItem.state == MaterialState.READY)
    )
    if before_id:
        stmt = stmt.where(MaterialItem.id < before_id)
    rows = list(db.session.scalars(stmt.order_by(MaterialItem.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def rendition_for_article(by: Staff, item_id: int, purpose: str) -> MaterialRendition:
    """The rendition of a photo to put in an article: the newest one an editor made for `purpose` (it may blur a
    face or a plate), else the default (watermarked). Refused for a photo `by` may not see."""
    item = db.session.get(MaterialItem, item_id)
    from server.services import staff as staff_service

    visible = staff_service.visible_units(by)
    if item is None or (visible is not None and item.unit_id not in visible):
        raise ServiceError("素材不存在或无权使用")
    if item.state is not MaterialState.READY:
        raise ServiceError("素材尚未处理完成")
    made = [r for r in item.renditions if r.purpose == purpose]
    if made:
        return max(made, key=lambda r: r.id)
    [rendition] = render(item.id, [default_recipe(purpose)])
    return rendition


# -- processing ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    purpose: str
    crop: tuple[float, float, float, float] | None = None  # x, y, w, h fractions of the upright picture
    blur: tuple[tuple[float, float, float, float], ...] = ()
    watermark: str | None = None  # position (POSITIONS) or None
    opacity: float = 0.6

    def as_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "crop": list(self.crop) if self.crop else None,
            "blur": [list(b) for b in self.blur],
            "watermark": self.watermark,
            "opacity": round(self.opacity, 2),
        }

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:32]


def _box(raw: Any) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in raw)
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
        raise ServiceError("区域超出图片范围")
    return (round(x, 4), round(y, 4), round(min(w, 1 - x), 4), round(min(h, 1 - y), 4))


def make_recipe(
    purpose: str, *, crop: Any = None, blur: Any = (), watermark: str | None = None, opacity: Any = 0.6
) -> Recipe:
    if purpose not in PURPOSES:
        raise ServiceError("未知的用途")
    if watermark and watermark not in POSITIONS:
        raise ServiceError("水印位置无效")
    try:
        opacity = min(1.0, max(0.1, float(opacity)))
        boxes = tuple(_box(b) for b in (blur or ()))
        crop_box = _box(crop) if crop else None
    except (TypeError, ValueError):
        raise ServiceError("区域格式有误") from None
    return Recipe(purpose, crop_box, boxes, watermark or None, opacity)


@lru_cache(maxsize=16)
def _font(size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    """A CJK font if the machine has one (True); else Pillow's default, which draws no Chinese glyphs (False)."""
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size), True
    log.warning("no CJK font found: watermarks fall back to Pillow's default font (Chinese will not render)")
    return ImageFont.load_default(size=size), False


def watermark_text(item: MaterialItem) -> str:
    unit = item.unit.name if item.unit else "城管执法局"
    return f"{unit} {item.received_at.astimezone(LOCAL_TZ):%Y-%m-%d}"


@lru_cache(maxsize=64)
def _watermark_patch(text: str, size: int, opacity: float) -> Image.Image:
    """The text on its translucent patch; cached: a unit's photos of a day share it, per output width."""
    font, _ = _font(size)
    left, top, right, bottom = font.getbbox(text)
    pad = size // 2
    patch = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, int(90 * opacity)))
    draw = ImageDraw.Draw(patch)
    draw.text((pad - left, pad - top), text, font=font, fill=(255, 255, 255, int(255 * opacity)))
    return patch


def _draw_watermark(image: Image.Image, text: str, position: str, opacity: float) -> Image.Image:
    """Text on a small RGBA patch composited over its corner only (not a full-size overlay)."""
    patch = _watermark_patch(text, max(12, image.width // 36), opacity)
    margin = max(4, image.width // 60)
    xs = {"l": margin, "r": image.width - patch.width - margin, "c": (image.width - patch.width) // 2}
    ys = {"t": margin, "b": image.height - patch.height - margin, "c": (image.height - patch.height) // 2}
    if position == "center":
        x, y = xs["c"], ys["c"]
    else:
        x, y = xs[position[1]], ys[position[0]]
    x, y = max(0, x), max(0, y)
    region = image.crop((x, y, x + patch.width, y + patch.height)).convert("RGBA")
    image.paste(Image.alpha_composite(region, patch).convert("RGB"), (x, y))
    return image


def _blur(image: Image.Image, box: tuple[float, float, float, float]) -> None:
    x, y, w, h = box
    left, top = int(x * image.width), int(y * image.height)
    right, bottom = min(image.width, int((x + w) * image.width) + 1), min(image.height, int((y + h) * image.height) + 1)
    if right - left < 2 or bottom - top < 2:
        return
    region = image.crop((left, top, right, bottom))
    small = region.resize((max(1, region.width // 16), max(1, region.height // 16)), Image.Resampling.BILINEAR)
    image.paste(small.resize(region.size, Image.Resampling.NEAREST).filter(ImageFilter.GaussianBlur(6)), (left, top))


def _jpeg_at(image: Image.Image, quality: int, *, optimize: bool) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=optimize)  # no exif=: nothing of the camera leaves
    return out.getvalue()


def encode_within(image: Image.Image, max_bytes: int, *, quality: int = 88) -> bytes:
    """JPEG without EXIF: at `quality` when it fits `max_bytes` (one encode, the usual case), else at the highest
    quality down to MIN_QUALITY that fits (a bisection, ≤ 6 encodes); only if none does is the picture shrunk."""
    data = _jpeg_at(image, quality, optimize=False)
    if len(data) <= max_bytes:
        return data
    lo, hi, best = MIN_QUALITY, quality - 1, b""
    while lo <= hi:
        q = (lo + hi) // 2
        attempt = _jpeg_at(image, q, optimize=True)
        if len(attempt) <= max_bytes:
            best, lo = attempt, q + 1
        else:
            data, hi = attempt, q - 1  # ends as the attempt at MIN_QUALITY when nothing fits
    if best or min(image.size) <= 8:
        return best or data
    # The bytes go roughly with the pixel count: shrink by the square root of the excess (a little more), once.
    factor = min(0.9, 0.95 * math.sqrt(max_bytes / len(data)))
    smaller = image.resize(
        (max(1, int(image.width * factor)), max(1, int(image.height * factor))), Image.Resampling.LANCZOS
    )
    return encode_within(smaller, max_bytes, quality=quality)


Box = tuple[float, float, float, float]

# EXIF orientation → the transpose that turns the stored picture upright, and the map of a box (left, top, right,
# bottom as fractions) on the upright picture to the same box on the stored one: cuts happen before turning.
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_TO_STORED: dict[int, Callable[[float, float, float, float], Box]] = {
    1: lambda left, top, right, bottom: (left, top, right, bottom),
    2: lambda left, top, right, bottom: (1 - right, top, 1 - left, bottom),
    3: lambda left, top, right, bottom: (1 - right, 1 - bottom, 1 - left, 1 - top),
    4: lambda left, top, right, bottom: (left, 1 - bottom, right, 1 - top),
    5: lambda left, top, right, bottom: (top, left, bottom, right),
    6: lambda left, top, right, bottom: (top, 1 - right, bottom, 1 - left),
    7: lambda left, top, right, bottom: (1 - bottom, 1 - right, 1 - top, 1 - left),
    8: lambda left, top, right, bottom: (1 - bottom, left, 1 - top, right),
}


@dataclass(frozen=True)
class Cut:
    """What a recipe takes from an original, worked out before anything is decoded."""

    box: Box  # left, top, right, bottom: fractions of the upright picture (the recipe's crop, then the ratio)
    size: tuple[int, int]  # the output, upright
    scale: float  # output pixels per original pixel: the share of the original's resolution it needs


FULL_FRAME: Box = (0.0, 0.0, 1.0, 1.0)


def plan_cut(recipe: Recipe, width: int, height: int) -> Cut:
    """The cut of `recipe` from an upright original of width × height; an output is never enlarged."""
    purpose = PURPOSES[recipe.purpose]
    x, y, w, h = recipe.crop or (0.0, 0.0, 1.0, 1.0)
    rw, rh = w * width, h * height  # the region, in original pixels
    if purpose.crop:  # the largest centred part of the region with the purpose's ratio
        ratio = purpose.size[0] / purpose.size[1]
        if rw / rh > ratio:
            keep = rh * ratio / rw
            x, w, rw = x + w * (1 - keep) / 2, w * keep, rh * ratio
        else:
            keep = rw / ratio / rh
            y, h, rh = y + h * (1 - keep) / 2, h * keep, rw / ratio
        size = purpose.size if rw > purpose.size[0] else (max(1, round(rw)), max(1, round(rh)))
    else:
        shrink = min(1.0, max(purpose.size) / max(rw, rh))
        size = (max(1, round(rw * shrink)), max(1, round(rh * shrink)))
    box = FULL_FRAME if (x, y, w, h) == (0.0, 0.0, 1.0, 1.0) else (x, y, x + w, y + h)
    return Cut(box, size, min(1.0, max(size[0] / rw, size[1] / rh)))


def render_images(
    source: str | Path | bytes, recipes: list[Recipe], *, text: str | None = None
) -> list[tuple[bytes, tuple[int, int]]]:
    """Every rendition of `recipes` (JPEG bytes and upright size) from one decode of `source`.

    A JPEG is decoded once, DCT-scaled (draft) to the smallest scale that still serves the most demanding recipe.
    That decode is shrunk once more to a base: the largest whole-picture output (the in-article image) if one is
    asked for, so that it needs no second resampling; else the whole picture at the largest scale the uncropped
    recipes need. Each rendition is cut from the base when the base has the pixels for it (cheap: a reduce() by the
    whole factor, then BICUBIC on small pictures), else from the decode (an editor's close crop; the cover of a
    portrait photo, which needs more of its width than the in-article image has). Cuts are made on the stored
    orientation; only the small outputs are turned upright.
    """
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
        if opened.width * opened.height > (images.MAX_JPEG_PIXELS if opened.format == "JPEG" else images.MAX_PIXELS):
            raise images.ImageRejected(images.TOO_MANY_PIXELS)
        orientation = opened.getexif().get(0x0112, 1)
        orientation = orientation if orientation in _TO_STORED else 1
        stored = opened.size
        cuts = [plan_cut(recipe, *(stored[::-1] if orientation >= 5 else stored)) for recipe in recipes]
        need = max((c.scale for c in cuts), default=1.0)
        if opened.format == "JPEG":
            # A 48 MP and larger photo: never more than MAX_PIXELS decoded, a close crop gets what that has.
            opened.draft("RGB", images.fit_draft(stored, need))
        decoded = opened.convert("RGB") if opened.mode != "RGB" else opened
        base, base_scale = decoded, min(decoded.width / stored[0], decoded.height / stored[1])
        whole = [c for c in cuts if c.box == FULL_FRAME]
        if plain := whole or [c for r, c in zip(recipes, cuts, strict=True) if r.crop is None]:
            top = max(plain, key=lambda c: c.scale)
            if top.box == FULL_FRAME:  # the base is exactly that output: it needs no second resampling
                size = top.size[::-1] if orientation >= 5 else top.size
            else:
                size = (math.ceil(stored[0] * top.scale), math.ceil(stored[1] * top.scale))
            if size[0] * size[1] < 0.8 * decoded.width * decoded.height:  # else the decode serves as well
                base = decoded.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
                base_scale = min(size[0] / stored[0], size[1] / stored[1])
        return [
            _render_cut(base, cut, recipe, orientation, text)
            if base is not decoded and cut.scale <= base_scale * 1.01
            else _render_cut(decoded, cut, recipe, orientation, text, large=True)
            for recipe, cut in zip(recipes, cuts, strict=True)
        ]


def _render_cut(
    src: Image.Image, cut: Cut, recipe: Recipe, orientation: int, text: str | None, *, large: bool = False
) -> tuple[bytes, tuple[int, int]]:
    left, top, right, bottom = _TO_STORED[orientation](*cut.box)
    box = (left * src.width, top * src.height, right * src.width, bottom * src.height)
    size = cut.size[::-1] if orientation >= 5 else cut.size
    if size == src.size and cut.box == FULL_FRAME:
        work = src if orientation in ORIENTATIONS else src.copy()  # the transpose makes the copy
    elif large:  # Pillow's thumbnail() trade-off
        work = src.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
    else:  # from the base, small already: box-average by the whole factor (reduce), then BICUBIC the rest
        work = src.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=1.0)
    if (method := ORIENTATIONS.get(orientation)) is not None:  # FLIP_LEFT_RIGHT is 0: test against None
        work = work.transpose(method)
    for blur in recipe.blur:
        _blur(work, blur)
    if recipe.watermark and text:
        _draw_watermark(work, text, recipe.watermark, recipe.opacity)
    return encode_within(work, PURPOSES[recipe.purpose].max_bytes), work.size


def render(item_id: int, recipes: list[Recipe]) -> list[MaterialRendition]:
    """Renditions of an item, cached by (item, recipe key): only the missing ones are made, from one decode."""
    item = db.session.get(MaterialItem, item_id)
    if item is None or item.state is not MaterialState.READY:
        raise ServiceError("素材尚未处理完成")
    cached = {r.recipe_key: r for r in item.renditions}
    missing = [r for r in dict.fromkeys(recipes) if r.key not in cached]
    if missing:
        made = render_images(images.media_path(item.original_path), missing, text=watermark_text(item))
        for recipe, (data, (w, h)) in zip(missing, made, strict=True):
            sha = hashlib.sha256(data).hexdigest()
            path = f"renditions/{item.id}/{recipe.key}.jpg"
            images.write_media(path, data)
            rendition = MaterialRendition(
                item_id=item.id,
                recipe_key=recipe.key,
                recipe=recipe.as_dict(),
                purpose=recipe.purpose,
                path=path,
                sha256=sha,
                size=len(data),
                width=w,
                height=h,
            )
            try:
                with db.session.begin_nested():
                    db.session.add(rendition)
            except IntegrityError:  # another worker made it meanwhile: same recipe, same result
                pass
        db.session.commit()
        db.session.refresh(item)
        cached = {r.recipe_key: r for r in item.renditions}
    return [cached[r.key] for r in recipes]


def default_recipe(purpose: str) -> Recipe:
    return make_recipe(purpose, watermark="br" if purpose in ("cover", "article", "image") else None)


# -- to WeChat -------------------------------------------------------------------------------------------------------


def upload_rendition(rendition: MaterialRendition) -> WechatImage:
    """Upload a processed file once per (sha256, kind); the stored media_id / URL is reused afterwards."""
    kind = PURPOSES[rendition.purpose].kind
    stmt = sa.select(WechatImage).filter_by(sha256=rendition.sha256, kind=kind)
    if (done := db.session.scalar(stmt)) is not None:
        return done
    data = images.media_path(rendition.path).read_bytes()
    upload = (f"{rendition.sha256[:16]}.jpg", data, "image/jpeg")  # WeChat goes by the file name's extension
    client = get_client()
    if kind == "uploadimg":
        record = WechatImage(sha256=rendition.sha256, kind=kind, url=client.media.upload_image(upload))
    else:
        res = client.material.add(kind, upload)
        record = WechatImage(sha256=rendition.sha256, kind=kind, media_id=res["media_id"], url=res.get("url"))
    db.session.add(record)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return db.session.scalars(stmt).one()
    return record


# Answers a retry may change: WeChat busy (-1, also a body that is not JSON), a minute's rate limit, a token another
# process was renewing, an HTTP error status (no errcode). Any other code is WeChat's verdict on these bytes or this
# account (file type or size, 48001 no permission, 45009 the day's quota, which retries minutes apart cannot outlast):
# the upload fails at once with its reason, and an editor retries once it is fixed (45009: the next day).
RETRYABLE_UPLOAD_ERRORS = {-1, 45011, None, *TOKEN_ERRORS}
UPLOAD_ERROR_MAX = 200


def _claim_upload(rendition_id: int, *, fresh: bool) -> bool:
    """Queue a rendition's upload: one conditional UPDATE, so that a double click or two editors at once queue it once.
    Open to a failed upload, one whose task was lost (UPLOAD_STALE) and, when `fresh`, one never asked for."""
    now = utcnow()
    claimable = [
        MaterialRendition.upload_state == UploadState.FAILED,
        sa.and_(
            MaterialRendition.upload_state.in_((UploadState.QUEUED, UploadState.UPLOADING)),
            MaterialRendition.upload_state_at < now - UPLOAD_STALE,
        ),
    ]
    if fresh:
        claimable.append(MaterialRendition.upload_state.is_(None))
    claim = (
        sa.update(MaterialRendition)
        .where(MaterialRendition.id == rendition_id, sa.or_(*claimable))
        .values(upload_state=UploadState.QUEUED, upload_error=None, upload_state_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return db.session.execute(claim).rowcount == 1


def request_upload(item_id: int, recipe: Recipe, *, audited: bool = True) -> tuple[MaterialRendition, bool]:
    """生成并上传到微信: the rendition is made now, so that the page lists it with its upload state at once; its upload
    is queued (and audited) once however often the button is pressed. Returns it and whether this call queued it."""
    item = db.session.get(MaterialItem, item_id)
    if item is None or item.state is not MaterialState.READY:
        raise ServiceError("素材尚未处理完成")
    [rendition] = render(item.id, [recipe])
    if queued := _claim_upload(rendition.id, fresh=True):
        if audited:
            audit.record("material.upload", target=item, after=recipe.as_dict())
    db.session.commit()
    if queued:
        from server.tasks import materials as tasks

        _enqueue(tasks.upload_rendition, rendition.id)
        db.session.expire(rendition)  # an eager task (tests, demo) changed it in a session of its own
    return rendition, queued


def retry_upload(rendition: MaterialRendition) -> bool:
    """重试: a failed upload (or one whose task was lost) queued again, once however often it is pressed; audited with
    the reason it had failed. False: nothing to retry (queued, uploading or uploaded meanwhile)."""
    before = {"upload_state": rendition.upload_state and rendition.upload_state.value, "error": rendition.upload_error}
    if not _claim_upload(rendition.id, fresh=False):
        db.session.rollback()
        return False
    audit.record(
        "material.upload_retry",
        target=rendition.item,
        before=before,
        after={"rendition_id": rendition.id, "purpose": rendition.purpose},
    )
    db.session.commit()
    from server.tasks import materials as tasks

    _enqueue(tasks.upload_rendition, rendition.id)
    db.session.expire(rendition)  # an eager task (tests, demo) changed it in a session of its own
    return True


def _settle_upload(rendition_id: int, state: UploadState, error: str | None) -> None:
    db.session.rollback()  # whatever the failed attempt left in the session
    db.session.execute(
        sa.update(MaterialRendition)
        .where(MaterialRendition.id == rendition_id)
        .values(upload_state=state, upload_error=error and error[:UPLOAD_ERROR_MAX], upload_state_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def upload_queued(rendition_id: int, *, retried: int, last_try: bool) -> None:
    """A worker's attempt at a queued upload. Success, or a refusal no retry changes, is recorded and that is all; a
    transient failure is noted (the page shows it while it waits) and raised for the task to retry, unless this was
    the last try: then it is recorded as failed, with its reason."""
    started = db.session.execute(
        sa.update(MaterialRendition)
        .where(
            MaterialRendition.id == rendition_id,
            MaterialRendition.upload_state.in_((UploadState.QUEUED, UploadState.UPLOADING)),
        )
        .values(upload_state=UploadState.UPLOADING, upload_state_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not started:  # done or failed already (a duplicated delivery), or deleted with its photo
        return
    if (rendition := db.session.get(MaterialRendition, rendition_id, populate_existing=True)) is None:
        return  # deleted with its photo meanwhile
    try:
        upload_rendition(rendition)
    except WeChatClientException as exc:
        failure, reason, transient = exc, describe(exc), exc.errcode in RETRYABLE_UPLOAD_ERRORS
    except requests.RequestException as exc:
        failure, reason, transient = exc, describe(exc), True
    except Exception as exc:  # a file gone, a lock timed out: recorded, or it would read 上传中 for ever
        log.exception("material rendition %s: upload failed", rendition_id)
        failure, reason, transient = exc, describe(exc), False
    else:
        _settle_upload(rendition_id, UploadState.UPLOADED, None)
        return
    if transient and not last_try:
        _settle_upload(rendition_id, UploadState.QUEUED, reason)
        raise failure  # the task's autoretry takes it from here
    log.warning("material rendition %s: upload failed: %s", rendition_id, reason)
    _settle_upload(rendition_id, UploadState.FAILED, f"多次重试仍失败：{reason}" if retried else reason)


@dataclass(frozen=True)
class RenditionUpload:
    """A rendition as its page lists it: what WeChat has of it, and where its upload stands."""

    rendition: MaterialRendition
    wechat: WechatImage | None
    state: UploadState | None  # None: never asked for
    error: str | None  # a failure's reason, or the transient one a queued upload waits out
    retry: bool  # failed, or queued by a task that was lost

    @property
    def waiting(self) -> bool:
        """On its way: the page says a reload will tell."""
        return self.state in (UploadState.QUEUED, UploadState.UPLOADING) and not self.retry


def rendition_uploads(item: MaterialItem) -> list[RenditionUpload]:
    """The item's renditions with their uploads. The same bytes on WeChat already (another request, another photo)
    read as uploaded, whatever became of this request."""
    uploads, now, rows = uploads_of(item), utcnow(), []
    for r in item.renditions:
        done = uploads.get(f"{r.sha256}:{PURPOSES[r.purpose].kind}")
        state = UploadState.UPLOADED if done else r.upload_state
        error = None if done else r.upload_error
        rows.append(
            RenditionUpload(r, done, state, error, not done and (state is UploadState.FAILED or r.upload_stalled(now)))
        )
    return rows


def wechat_image(item_id: int, purpose: str, recipe: Recipe | None = None) -> str:
    """For publishing: the media_id (cover, thumb, image) or URL (article) of an item processed for `purpose`."""
    recipe = recipe or default_recipe(purpose)
    [rendition] = render(item_id, [recipe])
    record = upload_rendition(rendition)
    return (record.url if PURPOSES[purpose].kind == "uploadimg" else record.media_id) or ""


def uploads_of(item: MaterialItem) -> dict[str, WechatImage]:
    """rendition sha256:kind → its WeChat upload, for the detail page."""
    shas = [r.sha256 for r in item.renditions]
    rows = db.session.scalars(sa.select(WechatImage).where(WechatImage.sha256.in_(shas))) if shas else []
    return {f"{w.sha256}:{w.kind}": w for w in rows}


def _per_unit(column: Any, *conditions: Any) -> targets.Counter:
    """Photos per unit whose `column` time falls in the Beijing days start..end (the units' assessment)."""

    def counter(start: date, end: date) -> dict[int | None, float]:
        lo = datetime(start.year, start.month, start.day, tzinfo=LOCAL_TZ)
        hi = datetime(end.year, end.month, end.day, tzinfo=LOCAL_TZ) + timedelta(days=1)
        rows = db.session.execute(
            sa.select(MaterialItem.unit_id, sa.func.count())
            .where(column >= lo, column < hi, *conditions)
            .group_by(MaterialItem.unit_id)
        ).all()
        return {unit_id: float(n) for unit_id, n in rows}

    return counter


# A photo refused (not an image, expired in WeChat, a copy of one kept) is not in the library: no contribution.
targets.register_counter(
    "photos_contributed", _per_unit(MaterialItem.received_at, MaterialItem.state != MaterialState.FAILED)
)
targets.register_counter("photos_used", _per_unit(MaterialItem.used_at, MaterialItem.used_in_article))
