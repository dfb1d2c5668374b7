"""/m/upload: staff only; one request per photo, a retry (same client id or same bytes) makes no duplicate."""

from __future__ import annotations

import io

import sqlalchemy as sa

from models import MaterialItem, MaterialSource, MaterialState
from server.extensions import db
from tests import factories
from tests.services.test_images import HTML_AS_JPG, jpeg_bytes


def _csrf(client) -> str:
    import re

    html = client.get("/m/upload").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _post(client, token: str, data: bytes, client_id: str, **extra):
    form = {"photo": (io.BytesIO(data), "p.jpg"), "client_id": client_id, **extra}
    return client.post("/m/upload", data=form, headers={"X-CSRFToken": token}, content_type="multipart/form-data")


def test_a_citizen_is_refused(client, citizen_login, db_session):
    citizen_login("o-upload-citizen", path="/m/upload")
    res = client.get("/m/upload")
    assert res.status_code == 403 and "仅供" in res.get_data(as_text=True)


def test_staff_upload_with_retries_is_deduplicated(client, citizen_login, db_session):
    officer = factories.staff("wangwu", "officer", unit=factories.unit("静安分局"), name="王五")
    officer.openid = "o-upload-officer"
    db.session.commit()
    citizen_login("o-upload-officer", path="/m/upload")
    page = client.get("/m/upload")
    assert page.status_code == 200 and "现场照片上传" in page.get_data(as_text=True)
    token = _csrf(client)
    photo = jpeg_bytes(gps=True)
    first = _post(client, token, photo, "client-0001", caption="静安寺周边巡查", latitude="31.22", longitude="121.44")
    assert first.status_code == 201
    assert _post(client, token, photo, "client-0001").status_code == 200  # the same request retried
    assert _post(client, token, photo, "client-0002").status_code == 200  # same bytes, another id
    assert _post(client, token, jpeg_bytes(colour="green"), "client-0003").status_code == 201
    bad = _post(client, token, HTML_AS_JPG, "client-0004")
    assert bad.status_code == 400 and "图片" in bad.get_json()["error"]
    items = db.session.scalars(sa.select(MaterialItem).order_by(MaterialItem.id)).all()
    assert len(items) == 2
    assert items[0].source is MaterialSource.UPLOAD and items[0].state is MaterialState.READY
    assert items[0].caption == "静安寺周边巡查" and items[0].latitude == 31.22 and items[0].unit.name == "静安分局"


def test_the_same_photo_uploaded_again_with_a_caption_and_place_gets_them(client, citizen_login, db_session):
    """Uploaded first without a caption (or sent in chat), then again with one: 已上传, and the caption and place
    typed the second time were dropped."""
    officer = factories.staff("zhaoliu", "officer", unit=factories.unit("徐汇分局"), name="赵六")
    officer.openid = "o-upload-again"
    db.session.commit()
    citizen_login("o-upload-again", path="/m/upload")
    token = _csrf(client)
    photo = jpeg_bytes()
    assert _post(client, token, photo, "client-1001").status_code == 201
    again = {"caption": "徐家汇 占道经营", "address": "虹桥路 1 号", "latitude": "31.19", "longitude": "121.43"}
    assert _post(client, token, photo, "client-1002", **again).status_code == 200
    assert _post(client, token, photo, "client-1003", caption="徐家汇 占道经营").status_code == 200  # once
    assert _post(client, token, photo, "client-1002", **again).status_code == 200  # that request retried
    [item] = db.session.scalars(sa.select(MaterialItem)).all()
    assert (item.caption, item.address, item.latitude, item.longitude) == (
        "徐家汇 占道经营",
        "虹桥路 1 号",
        31.19,
        121.43,
    )
