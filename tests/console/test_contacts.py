"""Contact points in the console (CRUD, validation, audit, roles) and the public page /m/contacts."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import AuditLog, ContactPoint
from server.extensions import db
from server.services import contacts
from tests import factories


def _form(**overrides: str) -> dict:
    form = {
        "name": "外滩街道城管执法社区工作室",
        "address": "黄浦区中山东一路 1 号",
        "latitude": "31.2400",
        "longitude": "121.4900",
        "hours": "工作日 9:00-17:00",
        "phone": "021-63210000",
        "unit_id": "",
        "published": "on",
    }
    form.update(overrides)
    return form


def _points() -> list[ContactPoint]:
    return list(db.session.scalars(sa.select(ContactPoint).order_by(ContactPoint.id)))


def test_create_edit_delete_audited(as_admin):
    as_admin.get("/admin/contacts/new")
    assert as_admin.post("/admin/contacts/new", _form()).status_code == 302
    (point,) = _points()
    assert (point.latitude, point.longitude, point.published) == (31.24, 121.49, True)
    html = as_admin.get("/admin/contacts").get_data(as_text=True)
    assert "外滩街道城管执法社区工作室" in html and "31.240000, 121.490000" in html

    res = as_admin.post(f"/admin/contacts/{point.id}", _form(hours="每天 8:30-20:00", published=""))
    assert res.status_code == 302
    point = db.session.get(ContactPoint, point.id, populate_existing=True)
    assert point.hours == "每天 8:30-20:00" and not point.published

    assert as_admin.post(f"/admin/contacts/{point.id}/delete").status_code == 302
    assert _points() == []
    audits = db.session.scalars(sa.select(AuditLog).where(AuditLog.action.like("contact.%")).order_by(AuditLog.id))
    entries = list(audits)
    assert [a.action for a in entries] == ["contact.create", "contact.update", "contact.delete"]
    assert entries[1].before["published"] is True and entries[1].after["published"] is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "请填写名称"),
        ({"latitude": "121.49", "longitude": "31.24"}, "请检查是否把经度和纬度填反了"),
        ({"latitude": ""}, "请填写纬度"),
        ({"phone": "打电话"}, "电话只能包含"),
    ],
)
def test_validation_shows_the_form_again_in_chinese(as_admin, overrides, message):
    as_admin.get("/admin/contacts/new")
    res = as_admin.post("/admin/contacts/new", _form(**overrides))
    html = res.get_data(as_text=True)
    assert res.status_code == 400 and message in html
    assert "黄浦区中山东一路 1 号" in html  # what was typed is kept
    assert _points() == []


def test_duplicate_submit_is_refused(as_admin):
    as_admin.get("/admin/contacts/new")
    as_admin.post("/admin/contacts/new", _form())
    res = as_admin.post("/admin/contacts/new", _form())
    assert res.status_code == 400 and "已有名为" in res.get_data(as_text=True)
    assert len(_points()) == 1


@pytest.mark.parametrize("role", ["liaison", "officer"])
def test_other_roles_get_403(console, db_session, role):
    factories.staff("someone", role, unit=factories.unit("某中队"))
    console.login("someone")
    assert console.get("/admin/contacts").status_code == 403
    assert console.get("/admin/contacts/new").status_code == 403


def test_public_page_lists_published_points_with_an_offline_map(client, db_session):
    contacts.save_point(
        name="人民广场联络点", address="人民大道 1 号", latitude=31.231, longitude=121.474, phone="021-1"
    )
    contacts.save_point(name="外滩工作室", address="中山东一路 1 号", latitude=31.24, longitude=121.49)
    contacts.save_point(name="内部点", address="某处", latitude=31.2, longitude=121.4, published=False)
    res = client.get("/m/contacts")  # no WeChat sign-in: no redirect to OAuth
    html = res.get_data(as_text=True)
    assert res.status_code == 200
    assert "人民广场联络点" in html and "外滩工作室" in html and "内部点" not in html
    assert html.count('<circle cx="') == 2 and "navigator.geolocation" in html
    assert "不加载任何外部地图服务" in html and "https://" not in html and 'href="tel:021-1"' in html


def test_public_page_without_points(client, db_session):
    html = client.get("/m/contacts").get_data(as_text=True)
    assert "联络点信息整理中" in html and "<svg" not in html


def test_home_shows_the_tile(client, emulator, db_session):
    from tests.citizen.conftest import CitizenLogin  # the citizen tests' OAuth walk-through

    CitizenLogin(client, emulator)("o-fan")
    assert "社区联络点" in client.get("/m/").get_data(as_text=True)
