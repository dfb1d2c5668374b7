"""Community contact points (社区联络点): kept by editors, published at /m/contacts, the nearest answered in chat.

Nearest is computed in Python over every published point: a city has tens to a few hundred of them, one indexed
read of that many rows plus exact haversine costs well under a millisecond of arithmetic, and it always finds three
points however far they are (a SQL bounding box would have to widen and retry when the nearest lie outside it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from models import ContactPoint, Unit
from server.extensions import db
from server.services import ServiceError, audit
from server.urls import public_url

EARTH_RADIUS_M = 6_371_008.8
FIELDS = ("name", "address", "latitude", "longitude", "hours", "phone", "unit_id", "published")
PHONE_RE = re.compile(r"[0-9][0-9\- ()转]{4,30}")
# Mainland China's extent: catches swapped or mistyped coordinates (e.g. 121.47, 31.23) before citizens see them.
LAT_RANGE, LNG_RANGE = (3.0, 54.0), (73.0, 136.0)
MAX_REPLY_BYTES = 2048  # WeChat's limit for a text reply

audit.ACTION_LABELS.update(
    {"contact.create": "新增社区联络点", "contact.update": "修改社区联络点", "contact.delete": "删除社区联络点"}
)


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def format_distance(metres: float) -> str:
    if metres < 1000:
        return f"{max(10, round(metres / 10) * 10)} 米"
    if metres < 100_000:
        return f"{metres / 1000:.1f} 公里"
    return f"{metres / 1000:.0f} 公里"


def list_points(*, published_only: bool = False) -> list[ContactPoint]:
    query = sa.select(ContactPoint).options(selectinload(ContactPoint.unit)).order_by(ContactPoint.name)
    if published_only:
        query = query.where(ContactPoint.published)
    return list(db.session.scalars(query))


def nearest(latitude: float, longitude: float, limit: int = 3) -> list[tuple[ContactPoint, float]]:
    """The published points nearest to a position, nearest first, with their distance in metres."""
    ranked = sorted(
        ((p, haversine_m(latitude, longitude, p.latitude, p.longitude)) for p in list_points(published_only=True)),
        key=lambda pair: (pair[1], pair[0].id),
    )
    return ranked[:limit]


NEAR_ENOUGH_M = 50_000  # farther than this, the "nearest" point is not near


def nearest_reply(latitude: float, longitude: float) -> str | None:
    """The chat answer listing the three nearest contact points with distances; None when there are none."""
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None
    found = nearest(lat, lng)
    if not found:
        return None
    if found[0][1] > NEAR_ENOUGH_M:  # the nearest is in another city: a list of it helps no one
        link = public_url("citizen.contact_list")
        reply = f"您附近 {NEAR_ENOUGH_M // 1000} 公里内没有城管执法社区联络点。"
        return reply + (f"全部联络点：{link}" if link else "") + "\n服务热线：12345"
    parts = ["离您最近的城管执法社区联络点："]
    for i, (point, metres) in enumerate(found, start=1):
        lines = [f"{i}. {point.name}（约 {format_distance(metres)}）", f"地址：{point.address}"]
        if point.hours:
            lines.append(f"开放时间：{point.hours}")
        if point.phone:
            lines.append(f"电话：{point.phone}")
        parts.append("\n".join(lines))
    if link := public_url("citizen.contact_list"):
        parts.append(f"全部联络点：{link}")
    text = "\n\n".join(parts)
    while len(text.encode()) > MAX_REPLY_BYTES:  # long addresses: drop whole points rather than cut one in half
        parts.pop(-2)
        text = "\n\n".join(parts)
    return text


def _coordinate(value: str | float | None, label: str, bounds: tuple[float, float]) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ServiceError(f"请填写{label}（十进制度数，如 31.2304）") from None
    if not math.isfinite(number) or not bounds[0] <= number <= bounds[1]:
        raise ServiceError(f"{label}须在 {bounds[0]:g} 到 {bounds[1]:g} 之间（中国境内）；请检查是否把经度和纬度填反了")
    return round(number, 6)


def save_point(
    *,
    name: str,
    address: str,
    latitude: str | float | None,
    longitude: str | float | None,
    hours: str = "",
    phone: str = "",
    unit_id: int | None = None,
    published: bool = True,
    point: ContactPoint | None = None,
) -> ContactPoint:
    """Create or update a point, validated (messages in Chinese) and audited with before/after."""
    name, address = (name or "").strip(), (address or "").strip()
    hours, phone = (hours or "").strip(), (phone or "").strip()
    if not 1 <= len(name) <= 64:
        raise ServiceError("请填写名称（不超过 64 字）")
    if not 1 <= len(address) <= 200:
        raise ServiceError("请填写地址（不超过 200 字）")
    lat = _coordinate(latitude, "纬度", LAT_RANGE)
    lng = _coordinate(longitude, "经度", LNG_RANGE)
    if len(hours) > 100:
        raise ServiceError("开放时间不超过 100 字")
    if phone and not PHONE_RE.fullmatch(phone):
        raise ServiceError("电话只能包含数字、连字符、括号和「转」，如 021-12345678")
    if unit_id is not None and db.session.get(Unit, unit_id) is None:
        raise ServiceError("所选单位不存在")
    creating = point is None
    point = point or ContactPoint()
    before = None if creating else audit.snapshot(point, FIELDS)
    point.name, point.address, point.latitude, point.longitude = name, address, lat, lng
    point.hours, point.phone, point.unit_id, point.published = hours, phone, unit_id, published
    try:
        with db.session.begin_nested():  # a duplicate name undoes only this (and a new point leaves the session)
            db.session.add(point)
            db.session.flush()
    except IntegrityError:
        raise ServiceError(f"已有名为「{name}」的联络点（可能是重复提交），请在列表中查看") from None
    audit.record(
        "contact.create" if creating else "contact.update",
        target=point,
        before=before,
        after=audit.snapshot(point, FIELDS),
    )
    db.session.commit()
    return point


def delete_point(point: ContactPoint) -> None:
    audit.record("contact.delete", target=point, before=audit.snapshot(point, FIELDS))
    db.session.delete(point)
    db.session.commit()


@dataclass(frozen=True)
class MapPoint:
    point: ContactPoint
    x: float
    y: float


@dataclass(frozen=True)
class MapLayout:
    """Points projected onto a width×height box (equirectangular, shrunk by cos(latitude) so shapes stay true).

    The transform is exposed so the page's script can place "me" with the same projection.
    """

    width: int
    height: int
    points: list[MapPoint]
    lat0: float  # the box's top (north) edge
    lng0: float  # its left (west) edge
    scale: float  # pixels per degree of latitude
    kx: float  # cos(mean latitude)
    pad: float


def map_layout(points: list[ContactPoint], width: int = 600, height: int = 400, pad: float = 28) -> MapLayout | None:
    if not points:
        return None
    lats, lngs = [p.latitude for p in points], [p.longitude for p in points]
    centre_lat, centre_lng = (min(lats) + max(lats)) / 2, (min(lngs) + max(lngs)) / 2
    kx = math.cos(math.radians(centre_lat))
    span_x = max((max(lngs) - min(lngs)) * kx, 1e-3)  # one point alone still gets a sensible box
    span_y = max(max(lats) - min(lats), 1e-3)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    # The box's centre maps to the drawing's centre; lat0/lng0 are where the padded drawing area starts.
    lng0 = centre_lng - (width / 2 - pad) / (kx * scale)
    lat0 = centre_lat + (height / 2 - pad) / scale
    projected = [
        MapPoint(p, round(pad + (p.longitude - lng0) * kx * scale, 1), round(pad + (lat0 - p.latitude) * scale, 1))
        for p in points
    ]
    return MapLayout(width, height, projected, lat0, lng0, scale, kx, pad)
