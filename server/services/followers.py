"""Followers: who subscribed, when, and which QR scene brought them."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException

from models import AuditKind, Follower, InboundMessage
from server.extensions import db
from server.filters import LOCAL_TZ, local_dt
from server.services import ServiceError, audit, channels, sheets
from server.wechat.client import describe, get_client

log = logging.getLogger(__name__)


def _get_or_create(openid: str) -> Follower:
    """The follower's row, locked: WeChat may deliver one user's events side by side, out of order."""
    locked = sa.select(Follower).filter_by(openid=openid).with_for_update()
    follower = db.session.scalar(locked)
    if follower is not None:
        return follower
    follower = Follower(openid=openid, subscribed=False)
    try:
        with db.session.begin_nested():  # two first events of one user at once: the unique openid decides
            db.session.add(follower)
    except IntegrityError:
        follower = db.session.scalars(locked).one()
    return follower


def _later(at: datetime, than: datetime | None) -> bool:
    return than is None or at >= than


def subscribe(openid: str, at: datetime, scene: str | None = None) -> Follower:
    """A (re)subscribe. Events are applied by their time, not their arrival: the state is the latest event's, the
    first date and source scene the earliest subscribe's."""
    follower = _get_or_create(openid)
    if _later(at, follower.unsubscribed_at) and _later(at, follower.subscribed_at):
        follower.subscribed, follower.subscribed_at, follower.unsubscribed_at = True, at, None
        if scene:
            follower.last_scene = scene[:64]
    if follower.first_subscribed_at is None or at < follower.first_subscribed_at:
        follower.first_subscribed_at = at
        follower.source_scene = scene[:64] if scene else follower.source_scene
    elif scene and not follower.source_scene:
        follower.source_scene = scene[:64]
    db.session.commit()
    return follower


def unsubscribe(openid: str, at: datetime) -> Follower:
    follower = _get_or_create(openid)
    if _later(at, follower.subscribed_at) and _later(at, follower.unsubscribed_at):  # else an older, late delivery
        follower.subscribed, follower.unsubscribed_at = False, at
    db.session.commit()
    return follower


def _seen_following(follower: Follower, at: datetime | None) -> None:
    """WeChat sends a SCAN or a LOCATION event only from someone following now: one who followed before go-live,
    or whose subscribe event was missed, is held as a follower from it (their pages stop saying they do not follow);
    when they followed stays unknown. An unsubscribe later than this event stands."""
    if at is not None and not follower.subscribed and _later(at, follower.unsubscribed_at):
        follower.subscribed, follower.unsubscribed_at = True, None


def scan(openid: str, scene: str, at: datetime | None = None) -> Follower:
    """A follower scanned a parametric QR code; the scene feeds the source statistics."""
    follower = _get_or_create(openid)
    follower.last_scene = scene[:64]
    _seen_following(follower, at)
    db.session.commit()
    return follower


def record_location(openid: str, latitude: float, longitude: float, precision: float | None, at: datetime) -> None:
    """Keep the latest reported position (LOCATION events, sent when the user allows it)."""
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return  # malformed coordinates are kept in the message log only
    follower = _get_or_create(openid)
    follower.latitude, follower.longitude, follower.location_precision = latitude, longitude, precision
    follower.located_at = at
    _seen_following(follower, at)
    db.session.commit()


# -- The console: search, day counts, remarks, export --------------------------------------------------------------

PAGE_SIZE = 50
REMARK_MAX_BYTES = 30  # WeChat's limit for user/info/updateremark (40092 beyond it)
REMARK_FAILED = "备注未保存："  # then WeChat's reason (describe)
SCENE_NONE = "-"  # filter value: followers no QR scene brought


@dataclass(frozen=True)
class FollowerFilter:
    """A search over followers; every field optional. Dates are local (Asia/Shanghai) days, both ends included."""

    openid: str = ""
    remark: str = ""
    status: str = ""  # "", "subscribed", "unsubscribed"
    scene: str = ""  # a source scene, SCENE_NONE, or "" for any
    since: date | None = None
    until: date | None = None
    by: str = "latest"  # which subscribe time the dates apply to: "latest" or "first"

    def as_dict(self) -> dict[str, str]:
        """The non-empty fields, for the audit log and for links that keep the search."""
        out = {
            "openid": self.openid,
            "remark": self.remark,
            "status": self.status,
            "scene": self.scene,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        if out["since"] or out["until"]:
            out["by"] = self.by
        return {k: v for k, v in out.items() if v}


def parse_filter(args: Mapping[str, str]) -> tuple[FollowerFilter, list[str]]:
    """A filter from query parameters; what cannot be understood is dropped and explained, never an error page."""
    errors: list[str] = []

    def text(name: str, limit: int = 64) -> str:
        # Control characters (NUL among them, which PostgreSQL refuses) are never part of a real search.
        value = "".join(c for c in str(args.get(name) or "") if c.isprintable())
        return value.strip()[:limit]

    def day(name: str, label: str) -> date | None:
        raw = text(name, 32)
        if not raw:
            return None
        try:
            value = date.fromisoformat(raw)
        except ValueError:
            errors.append(f"{label}「{raw}」不是有效日期，应为 年-月-日，如 2026-03-01；已忽略")
            return None
        if not 2000 <= value.year <= 2100:
            errors.append(f"{label}「{raw}」超出范围；已忽略")
            return None
        return value

    status = text("status")
    if status not in ("", "subscribed", "unsubscribed"):
        status = ""
    since, until = day("since", "开始日期"), day("until", "结束日期")
    if since and until and since > until:
        errors.append("开始日期晚于结束日期，已对调")
        since, until = until, since
    by = "first" if text("by") == "first" else "latest"
    return FollowerFilter(text("openid"), text("remark", 30), status, text("scene"), since, until, by), errors


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)


def _conditions(f: FollowerFilter) -> list[sa.ColumnElement[bool]]:
    # autoescape: % and _ typed by the user are matched literally, not as LIKE wildcards
    where: list[sa.ColumnElement[bool]] = []
    if f.openid:
        where.append(Follower.openid.contains(f.openid, autoescape=True))
    if f.remark:
        where.append(Follower.remark.contains(f.remark, autoescape=True))
    if f.status:
        where.append(Follower.subscribed.is_(f.status == "subscribed"))
    if f.scene == SCENE_NONE:
        where.append(Follower.source_scene.is_(None))
    elif f.scene:
        where.append(Follower.source_scene == f.scene)
    column = Follower.first_subscribed_at if f.by == "first" else Follower.subscribed_at
    if f.since:
        where.append(column >= _local_midnight(f.since))
    if f.until:
        where.append(column < _local_midnight(f.until + timedelta(days=1)))
    return where


_ORDER = (Follower.subscribed_at.desc().nulls_last(), Follower.id.desc())


def _last_active(openids: sa.Select[Any]) -> sa.Subquery:
    """Latest message or event per follower, grouped in SQL over just the followers asked for."""
    return (
        sa.select(InboundMessage.openid, sa.func.max(InboundMessage.received_at).label("last_active"))
        .where(InboundMessage.openid.in_(openids))
        .group_by(InboundMessage.openid)
        .subquery("last")
    )


def last_active(openid: str) -> datetime | None:
    return db.session.scalar(sa.select(sa.func.max(InboundMessage.received_at)).where(InboundMessage.openid == openid))


@dataclass(frozen=True)
class FollowerRow:
    follower: Follower
    last_active: datetime | None


@dataclass(frozen=True)
class FollowerPage:
    rows: list[FollowerRow]
    total: int
    page: int
    pages: int


def search(f: FollowerFilter, page: int = 1) -> FollowerPage:
    """One page of followers matching the filter, newest subscriptions first; an out-of-range page is clamped."""
    where = _conditions(f)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Follower).where(*where)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), pages)
    # The page's ids once (a CTE used twice is computed once), then the grouped last-activity for only those.
    page_ids = sa.select(Follower.id).where(*where).order_by(*_ORDER).limit(PAGE_SIZE)
    page_ids = page_ids.offset((page - 1) * PAGE_SIZE).cte("page_ids")
    last = _last_active(sa.select(Follower.openid).join(page_ids, page_ids.c.id == Follower.id))
    stmt = (
        sa.select(Follower, last.c.last_active)
        .join(page_ids, page_ids.c.id == Follower.id)
        .outerjoin(last, last.c.openid == Follower.openid)
        .order_by(*_ORDER)
    )
    rows = [FollowerRow(follower, last_active) for follower, last_active in db.session.execute(stmt)]
    return FollowerPage(rows, total, page, pages)


def source_scenes(limit: int = 200) -> list[tuple[str, int]]:
    """Source scenes seen, most followers first (for the filter's choices)."""
    stmt = (
        sa.select(Follower.source_scene, sa.func.count())
        .where(Follower.source_scene.is_not(None))
        .group_by(Follower.source_scene)
        .order_by(sa.func.count().desc(), Follower.source_scene)
        .limit(limit)
    )
    return [(scene, int(n)) for scene, n in db.session.execute(stmt)]


def daily_changes(days: int = 30) -> list[tuple[date, int, int]]:
    """(local day, subscribes, unsubscribes) from the message log, zero-filled.

    The log counts every (re)subscribe and unsubscribe event, as WeChat's own statistics do; the follower table keeps
    only each person's latest dates. One query, bucketed by comparing against day boundaries in SQL.
    """
    today = datetime.now(LOCAL_TZ).date()
    first = today - timedelta(days=days - 1)
    bounds = [_local_midnight(first + timedelta(days=i)) for i in range(days + 1)]
    columns = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        in_day = sa.and_(InboundMessage.received_at >= lo, InboundMessage.received_at < hi)
        columns.append(sa.func.count().filter(in_day, InboundMessage.event == "subscribe"))
        columns.append(sa.func.count().filter(in_day, InboundMessage.event == "unsubscribe"))
    counts = db.session.execute(
        sa.select(*columns).where(
            InboundMessage.msg_type == "event",
            InboundMessage.event.in_(("subscribe", "unsubscribe")),
            InboundMessage.received_at >= bounds[0],
        )
    ).one()
    return [(first + timedelta(days=i), int(counts[2 * i]), int(counts[2 * i + 1])) for i in range(days)]


def set_remark(follower: Follower, remark: str) -> Follower:
    """Set the remark in WeChat, then here: if WeChat refuses, nothing changes on either side.

    The call comes before any write so that no row lock is held across a network round trip; sending the same remark
    again is harmless, so a double submit or a retry after a failed commit simply repeats it.
    """
    remark = remark.strip()
    size = len(remark.encode())
    if size > REMARK_MAX_BYTES:
        raise ServiceError(f"备注名最长 {REMARK_MAX_BYTES} 个字节（约 10 个汉字），现在是 {size} 个字节")
    try:
        get_client().user.update_remark(follower.openid, remark)
    except WeChatClientException as exc:
        log.info("updateremark refused: %s", exc.errcode)
        raise ServiceError(describe(exc, REMARK_FAILED)) from None
    except requests.RequestException as exc:
        log.warning("updateremark unreachable", exc_info=True)
        raise ServiceError(describe(exc, REMARK_FAILED)) from None
    if (follower.remark or "") != remark:
        audit.record("follower.remark", target=follower, before={"remark": follower.remark}, after={"remark": remark})
        follower.remark = remark or None
        db.session.commit()
    return follower


CSV_HEADER = ("openid", "备注", "状态", "首次关注", "最近关注", "取消关注", "来源场景", "最近扫码场景", "最近活跃")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return local_dt(value, "%Y-%m-%d %H:%M:%S")
    return sheets.text(str(value))


def export_csv(f: FollowerFilter) -> Iterator[str]:
    """The filtered followers as CSV text chunks (UTF-8 BOM first, for Excel); the export is audited before any row.

    Returns a generator: counting and the audit entry happen now, the rows are read in batches as it is consumed.
    """
    where = _conditions(f)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Follower).where(*where)) or 0
    audit.record(
        "follower.export", kind=AuditKind.EXPORT, target_type="follower", after={"filter": f.as_dict(), "rows": count}
    )
    db.session.commit()
    last = _last_active(sa.select(Follower.openid).where(*where))
    stmt = (
        sa.select(Follower, last.c.last_active)
        .where(*where)
        .outerjoin(last, last.c.openid == Follower.openid)
        .order_by(*_ORDER)
        .execution_options(yield_per=500)
    )
    return _csv_rows(stmt, channels.scene_names())


def _scene(scene: str | None, names: Mapping[str, str]) -> str | None:
    """A channel QR's scene reads as on the page, by its channel's name; the raw scene stays for matching."""
    return f"{names[scene]}（{scene}）" if scene in names else scene


def _csv_rows(stmt: sa.Select[Any], names: Mapping[str, str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield "\ufeff" + buffer.getvalue()
    for chunk in db.session.execute(stmt).partitions():
        buffer.seek(0)
        buffer.truncate()
        for follower, last_active in chunk:
            writer.writerow(
                [
                    _cell(follower.openid),
                    _cell(follower.remark),
                    "已关注" if follower.subscribed else "已取消",
                    _cell(follower.first_subscribed_at),
                    _cell(follower.subscribed_at),
                    _cell(follower.unsubscribed_at),
                    _cell(_scene(follower.source_scene, names)),
                    _cell(_scene(follower.last_scene, names)),
                    _cell(last_active),
                ]
            )
        yield buffer.getvalue()
