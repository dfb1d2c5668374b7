"""随手拍 H5 pages: filing with photos, refusals (4xx, nothing stored), double submit, my tips, nearby and +1."""

from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from models import Tip, TipPhoto
from server.extensions import db
from server.services import images, tips
from tests.services.test_images import HTML_AS_JPG, exif_of, jpeg_bytes, png_bomb, truncated_jpeg

OPENID = "o-h5-citizen"


def page_form(client) -> dict[str, str]:
    html = client.get("/m/tips/new").get_data(as_text=True)
    return {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
        "submit_key": re.search(r'name="submit_key" value="([^"]+)"', html).group(1),
    }


def post_tip(client, form: dict[str, str], photos: list[tuple[bytes, str]], **fields):
    data = {
        **form,
        "category": "违法建筑",
        "description": "楼顶新搭了一间彩钢板房",
        "latitude": "31.230400",
        "longitude": "121.473700",
        "address": "黄浦区某小区 3 号楼",
        "phone": "13800001111",
        **fields,
    }
    values = MultiDict(data)
    for content, name in photos:
        values.add("photos", FileStorage(io.BytesIO(content), filename=name, content_type="image/jpeg"))
    # Encoded in memory: the test client would spool a big body to a temp file it does not always close.
    boundary, body = encode_multipart(values)
    return client.post("/m/tips", data=body, content_type=f"multipart/form-data; boundary={boundary}")


@pytest.fixture
def logged_in(client, citizen_login):
    citizen_login(OPENID)
    return client


def _stored() -> list:
    return sorted(p for p in images.media_root().rglob("*") if p.is_file())


def test_home_shows_the_tiles_and_the_form_lists_categories(logged_in):
    home = logged_in.get("/m/").get_data(as_text=True)
    assert "/m/tips/new" in home and "/m/tips" in home
    page = logged_in.get("/m/tips/new").get_data(as_text=True)
    for name in tips.DEFAULT_CATEGORIES:
        assert name in page
    assert "无法在地图上选点" in page and "submit_key" in page


@pytest.mark.smoke  # also on the embedded SQLite (Python haversine, fakeredis Lua)
def test_filing_with_three_photos_and_a_location(logged_in):
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(gps=True), f"p{i}.jpg") for i in range(3)])
    assert res.status_code == 302
    tip = db.session.scalars(sa.select(Tip)).one()
    assert res.headers["Location"] == f"/m/tips/{tip.tracking_no}?filed=1"
    assert tip.openid == OPENID and len(tip.photos) == 3 and tip.ip == "127.0.0.1"
    detail = logged_in.get(res.headers["Location"]).get_data(as_text=True)
    assert "提交成功" in detail and tip.display_no in detail and "138****1111" in detail and "已提交" in detail
    # The served copy has no GPS.
    served = logged_in.get(f"/m/tips/{tip.tracking_no}/photos/{tip.photos[0].id}/public")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert not exif_of(served.data).get_ifd(0x8825)
    served.close()
    mine = logged_in.get("/m/tips").get_data(as_text=True)
    assert tip.display_no in mine


def test_anonymous_keeps_no_phone(logged_in):
    post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")], anonymous="1")
    assert db.session.scalars(sa.select(Tip)).one().phone_enc is None


@pytest.mark.parametrize(
    ("content", "name", "status", "message"),
    [
        (png_bomb(), "bomb.png", 422, "尺寸过大"),
        (truncated_jpeg(), "half.jpg", 422, "不是有效的图片"),
        (HTML_AS_JPG, "page.jpg", 422, "不是有效的图片"),
        (b"\xff\xd8\xff\xe0" + b"\0" * (50 * 1024 * 1024), "huge.jpg", 413, "不能超过 20 MB"),
    ],
    ids=["png-bomb", "truncated-jpeg", "html-renamed-jpg", "50mb"],
)
def test_bad_photos_are_refused_with_4xx_and_nothing_is_stored(logged_in, content, name, status, message):
    form = page_form(logged_in)
    before = _stored()
    res = post_tip(logged_in, form, [(jpeg_bytes(), "ok.jpg"), (content, name)])
    assert res.status_code == status
    body = res.get_data(as_text=True)
    assert message in body and "第 2 张照片" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipPhoto)) == 0
    assert _stored() == before
    assert form["submit_key"] in body  # the same key: fixing and resending still files one tip


def test_a_request_over_the_total_limit_is_413(logged_in, monkeypatch):
    from server.citizen import tips as views

    monkeypatch.setattr(views, "MAX_REQUEST", 1024 * 1024)
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg"), (b"\0" * 2 * 1024 * 1024, "b.jpg")])
    assert res.status_code == 413 and "上传内容过大" in res.get_data(as_text=True)


def test_a_nul_in_a_field_is_refused_before_anything_is_stored(logged_in, redis_client):
    before = _stored()
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")], address="黄浦区\x00某小区")
    assert res.status_code == 400 and "无效字符" in res.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0
    assert _stored() == before
    assert not redis_client.keys("tips:quota:*")  # refused before the quota was touched


def test_a_citizen_over_the_daily_limit_leaves_no_files_behind(app, logged_in, monkeypatch):
    monkeypatch.setitem(app.config, "TIP_DAILY_LIMIT", 1)
    assert post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")]).status_code == 302
    before = _stored()
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(colour="blue"), "b.jpg")])  # a new picture
    assert res.status_code == 400 and "今天" in res.get_data(as_text=True)
    assert _stored() == before  # not even the content-addressed original


def test_a_double_submit_files_one_tip(logged_in):
    form = page_form(logged_in)
    first = post_tip(logged_in, form, [(jpeg_bytes(), "a.jpg")])
    second = post_tip(logged_in, form, [(jpeg_bytes(), "a.jpg")])
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 1


def test_missing_fields_are_shown_again_with_the_form(logged_in):
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")], description="短")
    assert res.status_code == 400 and "5 到 1000" in res.get_data(as_text=True)
    res = post_tip(logged_in, page_form(logged_in), [], description="足够长的一段描述")
    assert res.status_code == 400 and "1 到 9 张" in res.get_data(as_text=True)


def test_the_limit_message_after_ten(logged_in):
    for _ in range(10):
        assert post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")]).status_code == 302
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")])
    assert res.status_code == 400 and "今天提交的线索已达上限" in res.get_data(as_text=True)


def test_a_blocked_citizen_is_told_politely(logged_in):
    tips.block(OPENID, "恶意提交")
    res = post_tip(logged_in, page_form(logged_in), [(jpeg_bytes(), "a.jpg")])
    assert res.status_code == 400 and "12345" in res.get_data(as_text=True)


def relogin(client, citizen_login, openid: str) -> None:
    from flask import g

    with client.session_transaction() as session:
        session.clear()
    g.pop("csrf_token", None)  # requests share the test's app context: forget the old session's cached token
    citizen_login(openid)


def test_only_the_owner_sees_a_tip_and_its_photos(client, citizen_login):
    citizen_login(OPENID)
    post_tip(client, page_form(client), [(jpeg_bytes(), "a.jpg")])
    tip = db.session.scalars(sa.select(Tip)).one()
    relogin(client, citizen_login, "o-someone-else")
    assert client.get(f"/m/tips/{tip.tracking_no}").status_code == 404
    assert client.get(f"/m/tips/{tip.tracking_no}/photos/{tip.photos[0].id}/thumb").status_code == 404
    assert client.get("/m/tips/ABCD2345").status_code == 404


def test_posting_without_identity_is_401(client):
    assert client.post("/m/tips", data={}).status_code == 401


def test_posting_without_the_form_token_is_400(logged_in):
    form = page_form(logged_in)
    form["csrf_token"] = "forged"
    assert post_tip(logged_in, form, [(jpeg_bytes(), "a.jpg")]).status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0


def test_nearby_and_support(client, citizen_login):
    citizen_login("o-first")
    post_tip(client, page_form(client), [(jpeg_bytes(), "a.jpg")])
    tip = db.session.scalars(sa.select(Tip)).one()
    relogin(client, citizen_login, OPENID)
    found = client.get("/m/tips/nearby", query_string={"lat": 31.2310, "lng": 121.4737, "category": "违法建筑"}).json
    assert [t["no"] for t in found["tips"]] == [tip.tracking_no] and 60 < found["tips"][0]["distance"] < 75
    other = client.get("/m/tips/nearby", query_string={"lat": 31.2310, "lng": 121.4737, "category": "家禽"}).json
    assert other["tips"] == []
    token = page_form(client)["csrf_token"]
    res = client.post(f"/m/tips/{tip.tracking_no}/support", headers={"X-CSRFToken": token})
    assert res.status_code == 200 and res.json == {"support_count": 1, "added": True}, res.get_data(as_text=True)
    res = client.post(f"/m/tips/{tip.tracking_no}/support", headers={"X-CSRFToken": token})
    assert res.json == {"support_count": 1, "added": False}
    again = client.get("/m/tips/nearby", query_string={"lat": 31.2310, "lng": 121.4737, "category": "违法建筑"}).json
    assert again["tips"][0]["supported"] is True


def test_a_tip_is_filed_while_redis_is_down(app, logged_in, request):
    form = page_form(logged_in)
    request.getfixturevalue("redis_down")  # after the page: the citizen opened the form before Redis went away
    res = post_tip(logged_in, form, [(jpeg_bytes(), "p.jpg")])
    assert res.status_code == 302
    tip = db.session.scalars(sa.select(Tip)).one()
    assert res.headers["Location"] == f"/m/tips/{tip.tracking_no}?filed=1" and len(tip.photos) == 1
