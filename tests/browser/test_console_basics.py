"""A person at the console: logs in, sees the home page, is refused where their role does not reach."""

from __future__ import annotations

from tests import factories
from tests.browser.conftest import login, shoot
from tests.browser.helpers import seed_followers


def test_login_home_and_logout(page):
    factories.staff("admin1", "admin", name="王管理")
    people = seed_followers(24)  # over the last 30 days: the home chart has bars
    page.goto("/admin/")
    assert "/admin/login" in page.url
    shoot(page, "01-login")
    login(page, "admin1", "wrong-password-0")
    assert page.locator("[role=alert]").inner_text() == "用户名或密码错误"
    login(page, "admin1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    assert page.locator("h1").inner_text() == "首页"
    assert "王管理（管理员）" in page.locator(".topbar").inner_text()
    assert page.get_by_test_id("followers").inner_text() == str(sum(f.subscribed for f in people))
    assert page.locator(".chart svg rect").count() == 30
    shoot(page, "02-home")
    page.click("text=退出")
    page.wait_for_url("**/admin/login")


def test_first_login_must_set_a_password(page):
    factories.staff("newcomer", "editor", must_change=True)
    login(page, "newcomer", factories.PASSWORD)
    page.wait_for_url("**/admin/password**")
    page.fill("#old_password", factories.PASSWORD)
    page.fill("#new_password", "Fresh-start-2026")
    page.fill("#confirm_password", "Fresh-start-2026")
    page.click("text=保存新密码")
    page.wait_for_url("**/admin/")
    assert "密码已修改" in page.locator(".flash").inner_text()


def test_an_officer_is_refused_with_403(page):
    district = factories.unit()
    factories.staff("officer1", "officer", unit=district)
    login(page, "officer1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    assert "设置" not in page.locator(".sidebar").inner_text()  # no links to what they may not open
    response = page.goto("/admin/menu")
    assert response.status == 403
    assert "没有权限" in page.content()


def test_admin_manages_units_and_staff(page):
    factories.staff("admin1", "admin", name="王管理")
    login(page, "admin1", factories.PASSWORD)
    page.goto("/admin/units/new")
    page.fill("#name", "浦东分局")
    page.select_option("#kind", "district")
    page.click("text=保存")
    page.wait_for_url("**/admin/units")
    page.goto("/admin/staff/new")
    page.fill("#username", "zhang.liaison")
    page.fill("#name", "张联络")
    page.select_option("#role", "liaison")
    page.select_option("#unit_id", label="浦东分局")
    page.fill("#phone", "13800138000")
    page.fill("#password", "Welcome-2026a")
    page.click("button:has-text('保存')")
    page.wait_for_url("**/admin/staff")
    row = page.locator("tr", has_text="张联络")
    assert "138****8000" in row.inner_text()
    row.locator("button.reveal").click()
    page.wait_for_function("document.querySelector('.phone').textContent === '13800138000'")
    shoot(page, "10-staff")
    page.goto("/admin/audit")
    assert "staff.phone_view" in page.locator("table").inner_text()
    shoot(page, "14-audit")
