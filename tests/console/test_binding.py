"""The binding console: admins only, CSRF on every form, the QR proxied through us, revoke, unbind, tag resync."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from models import BindingCode, Staff
from server.extensions import db
from server.services import binding
from tests import factories


@pytest.fixture
def officer(db_session):
    return factories.staff("zhangsan", "officer", unit=factories.unit("浦东分局"), name="张三")


def _issue(console, officer, hours: int = 24):
    return console.post("/admin/binding", {"staff_id": officer.id, "hours": hours})


def test_admin_issues_a_code_and_sees_qr_code_and_expiry(as_admin, officer, emulator, admin):
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    assert "生成绑定码" in page and "张三（浦东分局）" in page
    res = _issue(as_admin, officer, hours=12)
    assert res.status_code == 302
    row = db.session.scalars(sa.select(BindingCode)).one()
    assert res.headers["Location"] == f"/admin/binding/{row.id}"
    assert row.created_by_id == admin.id
    detail = as_admin.get(res.headers["Location"]).get_data(as_text=True)
    assert f"{row.code[:4]} {row.code[4:]}" in detail and "有效期至" in detail
    assert f'src="/admin/binding/{row.id}/qr.png"' in detail
    assert "weixin.qq.com" not in detail  # the browser never talks to WeChat
    qr = as_admin.client.get(f"/admin/binding/{row.id}/qr.png")  # binary: not through the page helper
    assert qr.status_code == 200 and qr.mimetype == "image/png" and qr.data.startswith(b"\x89PNG")
    assert "no-store" in qr.headers["Cache-Control"]
    (created,) = emulator.state()["qrcodes"]
    assert created["ticket"] == row.qr_ticket and created["expire_at"] - created["created_at"] == pytest.approx(
        12 * 3600, abs=5
    )
    listing = as_admin.get("/admin/binding?status=outstanding").get_data(as_text=True)
    assert "待使用" in listing and f"{row.code[:4]} {row.code[4:]}" in listing


def test_issuing_for_a_non_officer_or_out_of_limits_is_refused(as_admin, officer, emulator):
    editor = factories.staff("editor1", "editor")
    res = as_admin.post("/admin/binding", {"staff_id": editor.id, "hours": 24})
    assert res.status_code == 400 and "只能为一线队员生成绑定码" in res.get_data(as_text=True)
    res = _issue(as_admin, officer, hours=1000)
    assert res.status_code == 400 and "有效期" in res.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BindingCode)) == 0


def test_forms_need_the_csrf_token(as_admin, officer, emulator):
    res = as_admin.client.post("/admin/binding", data={"staff_id": officer.id, "hours": 24})
    assert res.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BindingCode)) == 0


def test_revoke_from_the_console(as_admin, officer, emulator):
    row = binding.issue(officer.id)
    res = as_admin.post(f"/admin/binding/{row.id}/revoke", {"back": "detail"})
    assert res.status_code == 302 and res.headers["Location"] == f"/admin/binding/{row.id}"
    assert binding.status_of(db.session.get(BindingCode, row.id, populate_existing=True)) == "expired"
    assert as_admin.client.get(f"/admin/binding/{row.id}/qr.png").status_code == 404
    assert "已失效" in as_admin.get("/admin/binding?status=expired").get_data(as_text=True)


def test_unbind_from_the_console(as_admin, officer, emulator):
    emulator.hook("users", {"openids": ["o-zhang"]})
    binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    assert "已同步" in page and "解除绑定" in page
    res = as_admin.post(f"/admin/binding/staff/{officer.id}/unbind")
    assert res.status_code == 302
    assert db.session.get(Staff, officer.id, populate_existing=True).openid is None
    assert binding.tagged_openids() == set()
    assert "已解除 张三 的微信绑定" in as_admin.get("/admin/binding").get_data(as_text=True)


def test_an_unsynced_tag_is_shown_and_can_be_retried(as_admin, officer, emulator):
    emulator.hook("users", {"openids": ["o-zhang"]})
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchtagging", "errcode": 45009, "times": 100})
    binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    assert "标签未同步" in page
    assert re.search(rf'action="/admin/binding/staff/{officer.id}/tag"', page)
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchtagging", "errcode": 45009, "times": 0})
    assert as_admin.post(f"/admin/binding/staff/{officer.id}/tag").status_code == 302
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    assert "标签未同步" not in page and "已同步" in page


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/admin/binding"),
        ("post", "/admin/binding"),
        ("get", "/admin/binding/{id}"),
        ("get", "/admin/binding/{id}/qr.png"),
        ("post", "/admin/binding/{id}/qr"),
        ("post", "/admin/binding/{id}/revoke"),
        ("post", "/admin/binding/staff/{staff}/unbind"),
        ("post", "/admin/binding/staff/{staff}/tag"),
    ],
)
def test_every_binding_view_is_admin_only(console, officer, emulator, method, path):
    row = binding.issue(officer.id)
    factories.staff("editor1", "editor")
    assert console.login("editor1").status_code == 302
    url = path.format(id=row.id, staff=officer.id)
    res = console.client.get(url) if method == "get" else console.post(url, {"staff_id": officer.id})
    assert res.status_code == 403
    assert binding.status_of(db.session.get(BindingCode, row.id, populate_existing=True)) == "outstanding"
