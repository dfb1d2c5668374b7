"""Login, lock-out, forced password change, log out everywhere, CSRF, and role/unit checks."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from models import AuditKind, AuditLog, Staff
from server.services import ServiceError
from server.services import staff as staff_service
from tests import factories
from tests.console.conftest import Console


def test_login_and_logout(console, admin):
    res = console.login("admin1")
    assert res.status_code == 302 and res.headers["Location"] == "/admin/"
    assert "首页" in console.get("/admin/").get_data(as_text=True)
    console.post("/admin/logout")
    assert console.get("/admin/").status_code == 302


def test_a_copy_of_the_cookie_is_dead_after_logout(app, console, admin):
    console.login("admin1")
    copied = console.client.get_cookie("session").value  # left behind on a shared computer, say
    console.post("/admin/logout")
    other = Console(app.test_client())
    other.client.set_cookie("session", copied)
    res = other.get("/admin/")
    assert res.status_code == 302 and "/admin/login" in res.headers["Location"]
    assert "已退出登录，请重新登录" in other.get(res.headers["Location"]).get_data(as_text=True)
    assert console.login("admin1").status_code == 302 and console.get("/admin/").status_code == 200  # a new one is


def test_a_sign_in_lasts_the_configured_hours_however_busy(console, admin, monkeypatch):
    from server.console import auth

    console.login("admin1")
    assert console.get("/admin/").status_code == 200
    with console.client.session_transaction() as session:
        session[auth.SIGNED_IN_AT] -= 12 * 3600 + 1
    res = console.get("/admin/tips")
    assert res.status_code == 302 and "next=" in res.headers["Location"]  # back to the page after signing in again
    assert "登录已超过 12 小时，请重新登录" in console.get(res.headers["Location"]).get_data(as_text=True)


def test_signing_in_starts_a_new_session(console, admin):
    """Session fixation: what a session held before sign-in (its form-token secret, which whoever planted the cookie
    knows, or a citizen's identity) does not carry over into the signed-in one."""
    console.get("/admin/login")
    planted = console.token
    with console.client.session_transaction() as before:
        before["openid"] = "o-planted-0001"
        secret = before["csrf_token"]
    assert console.post("/admin/login", {"username": "admin1", "password": factories.PASSWORD}).status_code == 302
    with console.client.session_transaction() as after:
        assert after.get("csrf_token") != secret and "openid" not in after and after["_user_id"]
    res = console.client.post("/admin/logout", data={"csrf_token": planted})
    assert res.status_code == 400 and "页面已过期" in res.get_data(as_text=True)
    assert console.get("/admin/").status_code == 200  # still signed in


def test_wrong_password_is_a_plain_error(console, admin):
    res = console.login("admin1", "wrong-password-1")
    assert res.status_code == 400
    assert "用户名或密码错误" in res.get_data(as_text=True)


def test_account_locks_after_five_failures_even_with_the_right_password(console, admin):
    for _ in range(5):
        console.login("admin1", "wrong-password-1")
    res = console.login("admin1")
    assert res.status_code == 400
    assert "锁定" in res.get_data(as_text=True)


def test_one_ip_trying_many_accounts_is_locked(console, db_session):
    for i in range(20):
        console.login(f"nobody{i}", "wrong-password-1")
    factories.staff("real1")
    assert "锁定" in console.login("real1").get_data(as_text=True)


def test_an_office_behind_one_address_signs_in_all_day(db_session):
    """Each try is counted before the password is checked: a right one gives it back, or the address would lock."""
    factories.staff("clerk1")
    for _ in range(staff_service.MAX_FAILURES_PER_IP + 2):
        assert staff_service.authenticate("clerk1", factories.PASSWORD, "10.1.1.1").username == "clerk1"


def test_login_needs_the_csrf_token(client, admin):
    res = client.post("/admin/login", data={"username": "admin1", "password": factories.PASSWORD})
    assert res.status_code == 400


def test_first_login_forces_a_password_change(console, db_session):
    factories.staff("newbie", must_change=True)
    console.login("newbie")
    res = console.get("/admin/followers")
    assert res.status_code == 302 and res.headers["Location"].startswith("/admin/password")
    assert res.headers["Location"].endswith("next=/admin/followers")  # no stray "?" from an empty query
    assert console.get("/admin/tips?status=new").headers["Location"].endswith("next=/admin/tips?status%3Dnew")
    weak = console.post(
        "/admin/password", {"old_password": factories.PASSWORD, "new_password": "short", "confirm_password": "short"}
    )
    assert weak.status_code == 400 and "至少 10 位" in weak.get_data(as_text=True)
    ok = console.post(
        "/admin/password",
        {"old_password": factories.PASSWORD, "new_password": "BrandNew-2026x", "confirm_password": "BrandNew-2026x"},
    )
    assert ok.status_code == 302
    assert console.get("/admin/followers").status_code == 200


def test_guessing_the_old_password_counts_toward_the_lock_out(console, admin):
    """Someone at a signed-in screen who does not know the password must not find it by trying the change form: it
    would then be theirs to change, and the session theirs to keep."""
    console.login("admin1")
    console.get("/admin/password")
    for i in range(staff_service.MAX_FAILURES_PER_ACCOUNT):
        wrong = {
            "old_password": f"guess-{i}-abc1",
            "new_password": "BrandNew-2026x",
            "confirm_password": "BrandNew-2026x",
        }
        assert "原密码不正确" in console.post("/admin/password", wrong).get_data(as_text=True)
    right = {"old_password": factories.PASSWORD, "new_password": "BrandNew-2026x", "confirm_password": "BrandNew-2026x"}
    res = console.post("/admin/password", right)
    assert res.status_code == 400 and "锁定" in res.get_data(as_text=True)
    assert "锁定" in Console(console.client.application.test_client()).login("admin1").get_data(as_text=True)


def test_logout_everywhere_ends_other_sessions(app, db_session, admin):
    laptop, phone = Console(app.test_client()), Console(app.test_client())
    laptop.login("admin1")
    phone.login("admin1")
    assert phone.get("/admin/").status_code == 200
    laptop.post("/admin/logout-everywhere")
    assert phone.get("/admin/").status_code == 302  # its cookie carries the old session version


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, db_session, admin):
    laptop, phone = Console(app.test_client()), Console(app.test_client())
    laptop.login("admin1")
    phone.login("admin1")
    laptop.get("/admin/password")
    new = "BrandNew-2026x"
    res = laptop.post(
        "/admin/password", {"old_password": factories.PASSWORD, "new_password": new, "confirm_password": new}
    )
    assert res.status_code == 302  # 「其他设备上的登录已退出」: so they are
    assert laptop.get("/admin/").status_code == 200
    assert phone.get("/admin/").status_code == 302


@pytest.mark.parametrize("change", ["password", "deactivate"])
def test_an_admins_reset_or_deactivation_ends_the_accounts_sessions(app, as_admin, db_session, change):
    editor = factories.staff("editor9", "editor")
    desk = Console(app.test_client())
    desk.login("editor9")
    assert desk.get("/admin/tips").status_code == 200
    form = {"username": "editor9", "name": "editor9", "role": "editor", "active": "on"}
    if change == "password":
        form["password"] = "Reset-2026abc"
    else:
        del form["active"]
    assert as_admin.post(f"/admin/staff/{editor.id}", form).status_code == 302
    assert desk.get("/admin/tips").status_code == 302


def test_passwords_are_stored_with_a_modern_kdf(admin):
    assert admin.password_hash.startswith(("scrypt:", "pbkdf2:sha256:"))
    assert factories.PASSWORD not in admin.password_hash


def test_session_cookie_flags(app, console, admin):
    res = console.login("admin1")
    cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert app.config["SESSION_COOKIE_SECURE"] is False  # testing; production sets it (see test_config)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/staff",
        "/admin/units",
        "/admin/menu",
        "/admin/replies",
        "/admin/audit",
        "/admin/followers",
        "/admin/binding",
    ],
)
def test_officers_are_refused_every_console_page(console, db_session, path):
    district = factories.unit()
    factories.staff("officer1", "officer", unit=district)
    console.login("officer1")
    assert console.get(path).status_code == 403


def test_liaison_sees_followers_but_not_settings(console, db_session):
    district = factories.unit()
    factories.staff("liaison1", "liaison", unit=district)
    console.login("liaison1")
    assert console.get("/admin/followers").status_code == 200
    assert console.get("/admin/staff").status_code == 403
    assert console.get("/admin/menu").status_code == 403


def test_liaison_reach_is_their_unit_and_below(db_session):
    district = factories.unit("浦东分局")
    squad = factories.unit("陆家嘴中队", "squad", parent=district)
    other = factories.unit("黄浦分局")
    assert set(staff_service.unit_and_descendants(district.id)) == {district.id, squad.id}
    assert other.id not in staff_service.unit_and_descendants(district.id)


def test_ab_post_routing(db_session):
    district = factories.unit()
    a = factories.staff("post_a", "liaison", unit=district)
    b = factories.staff("post_b", "liaison", unit=district)
    staff_service.save_unit(
        name=district.name, kind="district", parent_id=None, post_a_id=a.id, post_b_id=b.id, unit=district
    )
    assert staff_service.publicity_contact(district) == a
    a.away = True
    assert staff_service.publicity_contact(district) == b


def test_unit_cannot_move_under_its_own_descendant(db_session):
    district = factories.unit("浦东分局")
    squad = factories.unit("陆家嘴中队", "squad", parent=district)
    with pytest.raises(Exception, match="下级单位"):
        staff_service.save_unit(name=district.name, kind="district", parent_id=squad.id, unit=district)


def test_admin_creates_staff_and_the_change_is_audited(as_admin, db_session):
    district = factories.unit()
    res = as_admin.post(
        "/admin/staff/new",
        {
            "username": "liu.editor",
            "name": "刘编辑",
            "role": "liaison",
            "unit_id": str(district.id),
            "phone": "13812345678",
            "password": "Welcome-2026a",
            "active": "on",
        },
    )
    assert res.status_code == 302
    page = as_admin.get("/admin/staff").get_data(as_text=True)
    assert "138****5678" in page and "13812345678" not in page
    entry = db_session.scalars(sa.select(AuditLog).filter_by(action="staff.create", staff_name="管理员甲")).one()
    assert entry.staff_name == "管理员甲" and entry.after["username"] == "liu.editor"


def test_revealing_a_phone_is_audited(as_admin, db_session):
    person = factories.staff("phone1", phone="13900001111")
    res = as_admin.post(f"/admin/staff/{person.id}/phone", headers={"X-CSRFToken": as_admin.token})
    assert res.json == {"phone": "13900001111"}
    assert db_session.scalars(sa.select(AuditLog).filter_by(kind=AuditKind.PII_VIEW)).one().target_id == str(person.id)


def test_bad_staff_input_gets_a_chinese_message(as_admin, db_session):
    res = as_admin.post(
        "/admin/staff/new", {"username": "X Y", "name": "某人", "role": "editor", "password": "Welcome-2026a"}
    )
    assert res.status_code == 400 and "用户名须为" in res.get_data(as_text=True)
    res = as_admin.post("/admin/staff/new", {"username": "officer9", "name": "某人", "role": "officer"})
    assert res.status_code == 400 and "必须属于一个单位" in res.get_data(as_text=True)


def test_an_admin_cannot_lock_themselves_or_everyone_out(as_admin, admin, db_session):
    me = {"username": "admin1", "name": "管理员甲", "role": "admin"}  # no "active": the box unticked
    res = as_admin.post(f"/admin/staff/{admin.id}", me)
    assert res.status_code == 400 and "不能停用自己的账号" in res.get_data(as_text=True)
    assert 'name="active" checked' not in res.get_data(as_text=True)  # shown as sent: unticked
    other = factories.staff("admin2", "admin", name="管理员乙")
    staff_service.save_staff(username="admin1", name="管理员甲", role="admin", unit_id=None, staff=admin, active=False)
    with pytest.raises(ServiceError, match="唯一启用的管理员"):  # admin2 is now the only one left
        staff_service.save_staff(username="admin2", name="管理员乙", role="editor", unit_id=None, staff=other)
    db_session.refresh(other)
    assert other.role.value == "admin" and other.active


def test_open_redirect_after_login_is_refused(console, admin):
    console.get("/admin/login")
    res = console.post("/admin/login?next=//evil.example/x", {"username": "admin1", "password": factories.PASSWORD})
    assert res.headers["Location"] == "/admin/"


def test_create_admin_cli(app, db_session):
    result = app.test_cli_runner().invoke(args=["create-admin", "boss", "--password", "Start-2026abc"])
    assert result.exit_code == 0, result.output
    person = staff_service.authenticate("boss", "Start-2026abc", "127.0.0.1")
    assert person.role.value == "admin" and person.must_change_password


def test_an_admin_sees_a_locked_account_and_unlocks_it(console, as_admin, db_session):
    factories.staff("locked1", "editor", name="被锁者")
    for _ in range(5):
        with pytest.raises(ServiceError):
            staff_service.authenticate("locked1", "wrong-password-1", "10.0.0.9")
    page = as_admin.get("/admin/staff").get_data(as_text=True)
    row = re.search(r"<tr>(?:(?!</tr>).)*被锁者(?:(?!</tr>).)*</tr>", page, re.S)
    assert row and "登录已锁定" in row.group(0)
    person = db_session.scalar(sa.select(Staff).filter_by(username="locked1"))
    assert as_admin.post(f"/admin/staff/{person.id}/unlock").status_code == 302
    assert staff_service.authenticate("locked1", factories.PASSWORD, "10.0.0.9").id == person.id
    assert db_session.scalar(sa.select(AuditLog).filter_by(action="staff.unlock")).target_id == str(person.id)
