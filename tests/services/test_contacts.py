"""Contact points: validation, nearest by haversine, the chat reply, the offline map's projection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import AuditLog
from server.extensions import db
from server.services import ServiceError, contacts

PEOPLE_SQUARE = (31.2304, 121.4737)


def point(name: str, lat: float, lng: float, **kwargs):
    defaults = {"address": f"{name}地址", "hours": "工作日 9:00-17:00", "phone": "021-12345678"}
    return contacts.save_point(name=name, latitude=lat, longitude=lng, **{**defaults, **kwargs})


@pytest.fixture
def points(db_session):
    return [
        point("外滩工作室", 31.2400, 121.4900),  # ~1.9 km
        point("南京东路联络点", 31.2350, 121.4780),  # ~0.65 km
        point("陆家嘴工作室", 31.2397, 121.4998),  # ~2.7 km
        point("徐家汇联络点", 31.1950, 121.4370),  # ~5.3 km
        point("人民广场联络点", 31.2310, 121.4740),  # ~70 m
        point("未发布的点", 31.2305, 121.4738, published=False),
    ]


def test_haversine_against_a_known_distance():
    # People's Square to the Oriental Pearl Tower: about 3.1 km.
    assert contacts.haversine_m(*PEOPLE_SQUARE, 31.2397, 121.4998) == pytest.approx(2680, rel=0.02)
    assert contacts.haversine_m(39.9042, 116.4074, 31.2304, 121.4737) == pytest.approx(1_067_000, rel=0.01)


def test_nearest_three_in_order_and_skips_unpublished(points):
    found = contacts.nearest(*PEOPLE_SQUARE)
    assert [p.name for p, _ in found] == ["人民广场联络点", "南京东路联络点", "外滩工作室"]
    metres = [m for _, m in found]
    assert metres == sorted(metres) and metres[0] < 100


def test_reply_lists_names_distances_addresses_hours_phones(points):
    reply = contacts.nearest_reply(*PEOPLE_SQUARE)
    assert (
        reply.index("1. 人民广场联络点（约 70 米）")
        < reply.index("2. 南京东路联络点（约 ")
        < reply.index("3. 外滩工作室（约 1.")
    )
    assert "公里" in reply and "地址：外滩工作室地址" in reply and "开放时间：工作日 9:00-17:00" in reply
    assert "电话：021-12345678" in reply and "徐家汇" not in reply and "未发布" not in reply


def test_a_citizen_far_from_every_point_is_told_so_not_given_a_list_from_another_city(points):
    reply = contacts.nearest_reply(22.5431, 114.0579)  # Shenzhen, some 1,200 km away
    assert reply.startswith("您附近 50 公里内没有城管执法社区联络点。") and "服务热线：12345" in reply
    assert "人民广场联络点" not in reply


def test_no_points_no_reply(db_session):
    assert contacts.nearest_reply(*PEOPLE_SQUARE) is None


@pytest.mark.parametrize(("metres", "text"), [(3, "10 米"), (654, "650 米"), (1949, "1.9 公里"), (123_456, "123 公里")])
def test_distance_format(metres, text):
    assert contacts.format_distance(metres) == text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": " "}, "请填写名称"),
        ({"address": ""}, "请填写地址"),
        ({"latitude": "abc"}, "请填写纬度"),
        ({"latitude": 121.47, "longitude": 31.23}, "填反"),
        ({"longitude": 200}, "经度须在"),
        ({"phone": "call me"}, "电话只能包含"),
        ({"hours": "长" * 101}, "开放时间不超过"),
        ({"unit_id": 999999}, "所选单位不存在"),
    ],
)
def test_validation_in_chinese(db_session, fields, message):
    values = {"name": "测试点", "address": "某路 1 号", "latitude": 31.2, "longitude": 121.4, **fields}
    with pytest.raises(ServiceError, match=message):
        contacts.save_point(**values)


def test_duplicate_name_is_refused_and_changes_are_audited(db_session):
    first = point("人民广场联络点", *PEOPLE_SQUARE)
    with pytest.raises(ServiceError, match="已有名为"):
        point("人民广场联络点", 31.0, 121.0)
    contacts.save_point(name="人民广场联络点", address="新地址", latitude=31.23, longitude=121.47, point=first)
    contacts.delete_point(first)
    actions = [a.action for a in db.session.scalars(sa.select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["contact.create", "contact.update", "contact.delete"]


def test_map_keeps_every_point_inside_the_box(points):
    layout = contacts.map_layout(contacts.list_points(published_only=True), 600, 400)
    for mp in layout.points:
        assert layout.pad - 0.1 <= mp.x <= layout.width - layout.pad + 0.1
        assert layout.pad - 0.1 <= mp.y <= layout.height - layout.pad + 0.1
    by_name = {mp.point.name: mp for mp in layout.points}
    assert by_name["徐家汇联络点"].y > by_name["外滩工作室"].y  # south is down
    assert by_name["陆家嘴工作室"].x > by_name["人民广场联络点"].x  # east is right
    one = contacts.map_layout([points[0]])
    assert (one.points[0].x, one.points[0].y) == (300.0, 200.0)  # a single point sits in the middle
