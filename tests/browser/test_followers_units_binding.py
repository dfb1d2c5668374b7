"""Followers (list, filter, remark synced to WeChat), units with their AB posts, and binding staff WeChats
(an officer, tagged for the menu; an editor, for notices, untagged)."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import BindingCode, Staff
from server.extensions import db
from server.services import binding as binding_service
from server.services import staff as staff_service
from tests import factories
from tests.browser.conftest import login, shoot
from tests.browser.helpers import deliver, reply_text, seed_followers, text_message


def _admin(page):
    factories.staff("admin1", "admin", name="王管理")
    login(page, "admin1", factories.PASSWORD)
    page.wait_for_url("**/admin/")


def test_followers_filter_and_remark_synced_to_wechat(page, emulator):
    people = seed_followers(24)
    emulator.hook("users", {"openids": [f.openid for f in people]})
    _admin(page)
    page.click(".sidebar >> text=粉丝")
    page.wait_for_url("**/admin/followers")
    assert page.get_by_test_id("total").inner_text() == "24"
    assert page.locator("tbody tr").count() == 24
    assert page.locator(".chart svg rect").count() == 60  # two charts of 30 days
    shoot(page, "08-followers")

    page.select_option("select[name=scene]", "qrscene_openday")
    page.click("button:has-text('筛选')")
    openday = [f for f in people if f.source_scene == "qrscene_openday"]
    assert page.get_by_test_id("total").inner_text() == str(len(openday))
    newest = max(openday, key=lambda f: f.subscribed_at)
    link = page.locator("tbody tr").first.locator("a")
    assert link.inner_text() == newest.openid
    link.click()
    page.wait_for_url(re.compile(r".*/admin/followers/\d+"))
    page.fill("#remark", "已核实志愿者")
    page.click("button:has-text('保存备注')")
    assert "备注已保存，并已同步到微信" in page.locator(".flash").inner_text()
    assert "已核实志愿者" in page.locator("tr", has_text="备注").first.inner_text()
    wechat_user = next(u for u in emulator.state()["users"] if u["openid"] == newest.openid)
    assert wechat_user["remark"] == "已核实志愿者"
    shoot(page, "09-follower-detail")
    page.click("text=← 返回粉丝列表")  # back to the filtered list
    assert page.get_by_test_id("total").inner_text() == str(len(openday))
    assert "已核实志愿者" in page.locator("tbody tr").first.inner_text()


def test_units_with_ab_posts(page):
    city = factories.unit("市局宣传处", "department")
    pudong = factories.unit("浦东分局")
    factories.unit("花木中队", "squad", parent=pudong)
    huangpu = factories.unit("黄浦分局")
    factories.unit("外滩中队", "squad", parent=huangpu)
    zhang = factories.staff("zhang", "liaison", name="张联络", unit=pudong)
    li = factories.staff("li.xuan", "liaison", name="李宣传", unit=pudong)
    chen = factories.staff("chen", "liaison", name="陈晓", unit=huangpu)
    zhou = factories.staff("zhou", "editor", name="周编辑", unit=city)
    chen.away = True
    staff_service.save_unit(
        name="黄浦分局", kind="district", parent_id=None, post_a_id=chen.id, post_b_id=zhou.id, unit=huangpu
    )
    db.session.commit()
    _admin(page)
    page.click(".sidebar >> text=单位与AB岗")
    page.wait_for_url("**/admin/units")
    page.locator("tr", has_text="浦东分局").locator("text=编辑").click()
    page.select_option("#post_a_id", str(zhang.id))
    page.select_option("#post_b_id", str(li.id))
    page.click("button:has-text('保存')")
    page.wait_for_url("**/admin/units")
    cells = page.locator("tr", has_text="浦东分局").locator("td").all_inner_texts()
    assert cells[:4] == ["浦东分局", "区局/分局", "张联络", "李宣传"]
    assert page.locator("tr", has_text="黄浦分局").locator("td").nth(2).inner_text() == "陈晓 外出"
    assert "└ 花木中队" in page.locator("tbody").inner_text()
    shoot(page, "11-units")


def test_binding_code_qr_and_binding_from_chat(page, live_server, emulator, account):
    squad = factories.unit("花木中队", "squad")
    officer = factories.staff("zhao", "officer", name="赵队员", unit=squad)
    other = factories.staff("qian", "officer", name="钱队员", unit=squad)
    binding_service.issue(other.id, hours=24)  # another officer's code, still waiting
    _admin(page)
    page.click(".sidebar >> text=微信绑定")
    page.wait_for_url("**/admin/binding")
    page.select_option("#staff_id", str(officer.id))
    page.fill("#hours", "48")
    page.click("button:has-text('生成绑定码和二维码')")
    page.wait_for_url(re.compile(r".*/admin/binding/\d+$"))
    assert "待使用" in page.locator(".card").first.inner_text()
    qr = page.locator("img[alt=绑定二维码]")
    page.wait_for_function("document.querySelector('img[alt=绑定二维码]').naturalWidth > 0")
    assert qr.evaluate("img => img.complete && img.naturalWidth") > 100
    code = page.locator(".stat code").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z0-9]{8}", code)
    row = db.session.scalar(sa.select(BindingCode).where(BindingCode.staff_id == officer.id))
    assert row.code == code
    scenes = [q["scene"].get("scene_str") for q in emulator.state()["qrcodes"]]
    assert binding_service.scene_of(row) in scenes and len(scenes) == 2
    shoot(page, "13-binding-detail")

    # The officer sends the code from their own WeChat to the live gateway.
    openid = "oOfficerZhao00000000000000"
    emulator.hook("users", {"openids": [openid]})
    answer = reply_text(deliver(live_server, account, text_message(account, openid, f"绑定 {code}")))
    assert answer and "赵队员" in answer
    db.session.expire_all()  # the gateway bound them in another process
    binding_service.tag_officer(officer.id)  # what the Celery worker does next (no worker runs in tests)
    page.reload()
    assert "已使用" in page.locator(".card").first.inner_text()
    assert page.locator("img[alt=绑定二维码]").count() == 0  # a spent code shows no QR
    page.click("text=返回列表")
    page.wait_for_url("**/admin/binding")
    bound = page.locator("tr", has_text="赵队员").first
    assert "已同步" in bound.inner_text()
    db.session.expire_all()
    assert db.session.get(Staff, officer.id).openid == openid
    statuses = page.locator("h2:has-text('绑定码') + .actions + .table-wrap tbody tr").all_inner_texts()
    assert len(statuses) == 2 and "已使用" in statuses[0] and "待使用" in statuses[1]
    shoot(page, "12-binding-list")


def test_binding_an_editor_for_notices(page, live_server, emulator, account):
    editor = factories.staff("zhou", "editor", name="周编辑", unit=factories.unit("市局宣传处", "department"))
    _admin(page)
    page.goto("/admin/binding")
    page.select_option("#staff_id", str(editor.id))
    page.click("button:has-text('生成绑定码和二维码')")
    page.wait_for_url(re.compile(r".*/admin/binding/\d+$"))
    code = page.locator(".stat code").inner_text().replace(" ", "")

    openid = "oEditorZhou000000000000000"
    emulator.hook("users", {"openids": [openid]})
    answer = reply_text(deliver(live_server, account, text_message(account, openid, f"绑定 {code}")))
    assert answer and answer.startswith("绑定成功：周编辑（市局宣传处），编辑。") and "发布失败通知" in answer
    page.goto("/admin/binding")
    bound = page.locator("tr", has_text="周编辑").first.inner_text()
    assert "推文发布失败通知" in bound and "不需要" in bound
    state = emulator.state()  # the page reads the tag's members; nothing tags or untags anyone
    assert not [c for c in state["calls"] if c["path"].startswith(("cgi-bin/tags/members/", "cgi-bin/tags/create"))]
    assert next(u for u in state["users"] if u["openid"] == openid)["tagid_list"] == []
