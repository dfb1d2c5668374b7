"""The binding console: admins only, CSRF on every form, the QR proxied through us, revoke, unbind, tag resync;
codes for editors and other non-officers, who are listed as bound without the officers' tag."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from models import BindingCode, Staff
from server.extensions import db
from server.services import binding
from server.services import staff as staff_service
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


def test_issuing_for_a_disabled_account_or_out_of_limits_is_refused(as_admin, officer, emulator):
    gone = factories.staff("editor1", "editor")
    gone.active = False
    db.session.commit()
    assert f'value="{gone.id}"' not in as_admin.get("/admin/binding").get_data(as_text=True)
    res = as_admin.post("/admin/binding", {"staff_id": gone.id, "hours": 24})
    assert res.status_code == 400 and "该账号已停用" in res.get_data(as_text=True)
    res = _issue(as_admin, officer, hours=1000)
    assert res.status_code == 400 and "有效期" in res.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BindingCode)) == 0


def test_an_editor_gets_a_code_and_is_listed_as_bound_without_the_tag(as_admin, officer, emulator):
    editor = factories.staff("zhou", "editor", name="周编辑", unit=factories.unit("市局宣传处", "department"))
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    editors = re.search(r'<optgroup label="编辑">(.*?)</optgroup>', page, re.S)
    assert editors and "周编辑（市局宣传处）" in editors.group(1) and "张三" not in editors.group(1)
    res = _issue(as_admin, editor)
    assert res.status_code == 302
    row = db.session.scalars(sa.select(BindingCode)).one()
    assert row.staff_id == editor.id and row.qr_ticket
    assert "请周编辑（编辑）用" in as_admin.get(res.headers["Location"]).get_data(as_text=True)
    emulator.hook("users", {"openids": ["o-zhou"]})
    binding.bind_by_text("o-zhou", row.code)
    listed = re.search(r"<tr>\s*<td>周编辑</td>.*?</tr>", as_admin.get("/admin/binding").get_data(as_text=True), re.S)
    assert listed and "推文发布失败通知" in listed.group(0) and "不需要" in listed.group(0)
    assert "重试同步" not in listed.group(0) and "解除绑定" in listed.group(0)
    assert binding.tagged_openids() == set()


def test_a_non_officer_still_carrying_the_tag_can_have_it_removed(as_admin, officer, emulator):
    emulator.hook("users", {"openids": ["o-zhang"]})
    binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchuntagging", "errcode": 45009, "times": 100})
    staff_service.save_staff(username="zhangsan", name="张三", role="editor", unit_id=officer.unit_id, staff=officer)
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    assert "不应带标签" in page and "移除标签" in page
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchuntagging", "errcode": 45009, "times": 0})
    assert as_admin.post(f"/admin/binding/staff/{officer.id}/tag").status_code == 302
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    assert "不应带标签" not in page and binding.tagged_openids() == set()


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


def test_the_duty_roster_links_an_unbound_editor_to_a_code_for_admins_only(console, admin, emulator):
    editor = factories.staff("zhou", "editor", name="周编辑")
    assert console.login("admin1").status_code == 302
    roster = console.get("/admin/alerts/terms").get_data(as_text=True)
    link = f'href="/admin/binding?staff_id={editor.id}"'
    assert link in roster
    form = console.get(f"/admin/binding?staff_id={editor.id}").get_data(as_text=True)
    assert re.search(rf'<option value="{editor.id}" selected>周编辑', form)
    assert console.post("/admin/logout").status_code == 302
    assert console.login("zhou").status_code == 302
    assert link not in console.get("/admin/alerts/terms").get_data(as_text=True)  # the binding page is admin-only


def test_a_name_with_a_quote_keeps_the_unbind_confirmation_intact(as_admin, emulator):
    person = factories.staff("obrien", "editor", name="O'Brien")
    emulator.hook("users", {"openids": ["o-obrien"]})
    person.openid = "o-obrien"
    db.session.commit()
    page = as_admin.get("/admin/binding").get_data(as_text=True)
    handler = re.search(r"onsubmit='(return confirm\([^']*\);)'", page)
    assert handler and r"O\u0027Brien" in handler.group(1)  # the quote cannot end the string or the attribute
