"""The custom menu editor, driven as an editor would: build, preview, publish, change, restore from history."""

from __future__ import annotations

from tests import factories
from tests.browser.conftest import login, shoot
from tests.browser.helpers import click_event, deliver, poll_reply

TIPS_URL = "https://example.org/m/tips/new"
HOTLINE = "城管服务热线：12319（24 小时）"
ABOUT = "市城管执法局，地址：人民路 100 号。"

FIRST_MENU = [
    {
        "name": "办事服务",
        "sub_button": [
            {"type": "view", "name": "我要举报", "url": TIPS_URL, "sub_button": []},
            {"type": "click", "name": "联系方式", "key": "CONTACT", "sub_button": []},
        ],
    },
    {"type": "click", "name": "联系我们", "key": "ABOUT_US", "sub_button": []},
]


def _card(page, i):
    return page.locator("#menu-editor .me-card").nth(i)


def _top_name(page, i):
    return _card(page, i).locator(":scope > .me-field input[data-field=name]")


def _sub(page, i, j):
    return _card(page, i).locator(".me-sub").nth(j)


def _publish(page):
    page.click("button:has-text('保存并发布')")  # the confirm() is accepted by the dialog handler
    page.wait_for_selector(".flash.success:has-text('已发布到微信')")


def _open_editor(page):
    page.on("dialog", lambda dialog: dialog.accept())
    factories.staff("admin1", "admin", name="王管理")
    login(page, "admin1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.click(".sidebar >> text=自定义菜单")
    page.wait_for_selector("#menu-editor .me-card")


def _build_first_menu(page):
    # The editor opens with a starter menu of one click button: it becomes 办事服务's first sub-button.
    assert page.locator("#menu-editor .me-card").count() == 1
    _top_name(page, 0).fill("办事服务")
    _card(page, 0).locator("button:has-text('+ 添加子菜单')").click()  # confirms the move into a sub-button
    tips = _sub(page, 0, 0)
    tips.locator("input[data-field=name]").fill("我要举报")
    tips.locator("select[data-field=type]").select_option("view")
    tips.locator("input[data-field=url]").fill(TIPS_URL)
    _card(page, 0).locator("button:has-text('+ 添加子菜单')").click()
    contact = _sub(page, 0, 1)
    contact.locator("input[data-field=name]").fill("联系方式")
    contact.locator("input[data-field=key]").fill("CONTACT")
    contact.locator("textarea[data-field=reply]").fill(HOTLINE)
    page.click("button:has-text('+ 添加一级菜单')")
    about = _card(page, 1)
    _top_name(page, 1).fill("联系我们")
    about.locator("input[data-field=key]").fill("ABOUT_US")
    about.locator("textarea[data-field=reply]").fill(ABOUT)
    assert page.locator("#menu-problems li").count() == 0


def test_build_preview_publish_change_and_restore(page, live_server, emulator, account):
    _open_editor(page)
    _build_first_menu(page)

    # The phone preview: the bar shows the top-level names, a tap opens the sub-menu, a click shows its reply.
    preview = page.locator("#menu-preview")
    assert preview.locator(".phone-tap").all_inner_texts() == ["≡办事服务", "联系我们"]
    preview.locator(".phone-tap", has_text="办事服务").click()
    assert preview.locator(".phone-sub").all_inner_texts() == ["我要举报", "联系方式"]
    preview.locator(".phone-sub", has_text="联系方式").click()
    assert preview.locator(".phone-bubble").inner_text() == HOTLINE
    preview.locator(".phone-tap", has_text="办事服务").click()  # open again for the picture
    shoot(page, "03-menu-editor")

    assert emulator.state()["menu"] is None
    _publish(page)
    assert emulator.state()["menu"]["button"] == FIRST_MENU
    # The click reply typed in the editor answers the CLICK on the live gateway.
    reply = poll_reply(lambda n: deliver(live_server, account, click_event(account, "oUser1", "CONTACT", n)), HOTLINE)
    assert reply == HOTLINE

    # A second version: rename the second column and publish it.
    _top_name(page, 1).fill("关于我们")
    _publish(page)
    second = emulator.state()["menu"]["button"]
    assert second[1]["name"] == "关于我们" and second[0] == FIRST_MENU[0]

    # History: the first version comes back in one click.
    page.click(".menu-tabs >> text=发布历史")
    page.wait_for_url("**/admin/menu/history**")
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    assert "线上" in rows.nth(0).inner_text() and "关于我们" in rows.nth(0).inner_text()
    shoot(page, "04-menu-history")
    first = rows.nth(1)
    assert "办事服务（2） · 联系我们" in first.inner_text()
    first.locator("button:has-text('恢复')").click()
    page.wait_for_selector(".flash.success:has-text('已恢复版本')")
    assert emulator.state()["menu"]["button"] == FIRST_MENU
    assert page.locator("tbody tr").count() == 3
    assert "恢复历史版本" in page.locator("tbody tr").nth(0).inner_text()


def test_invalid_edits_are_refused_with_the_field_named(page, emulator):
    _open_editor(page)
    _build_first_menu(page)
    _publish(page)
    published = emulator.state()["menu"]

    # Three top-level buttons at most: the add button is disabled at the third.
    page.click("button:has-text('+ 添加一级菜单')")
    _top_name(page, 2).fill("互动")
    _card(page, 2).locator("input[data-field=key]").fill("TALK")
    assert page.locator("button:has-text('+ 添加一级菜单')").is_disabled()
    assert "3/3 个一级菜单" in page.locator("#menu-editor").inner_text()

    # 17 bytes in a top-level name (four CJK characters are 12, five letters 5): refused before it is sent.
    name = _top_name(page, 0)
    name.fill("办事服务ABCDE")
    expected = "第 1 个一级菜单「办事服务ABCDE」：名称超过 16 字节（当前 17 字节，一个汉字占 3 字节）"
    assert page.locator("#menu-problems li").all_inner_texts() == [expected]
    assert "invalid" in (name.get_attribute("class") or "")
    assert "17/16 字节" in _card(page, 0).locator(".me-count").first.inner_text()
    assert page.locator("button:has-text('保存并发布')").is_disabled()
    assert page.locator("button:has-text('保存草稿')").is_disabled()
    shoot(page, "05-menu-invalid")

    # A browser that skips the check (the form sent as it is) gets the same message from the server.
    page.evaluate("document.getElementById('menu-form').submit()")
    page.wait_for_selector(".menu-error")
    assert page.locator(".menu-error").inner_text() == expected
    assert emulator.state()["menu"] == published
    # The refused edit is still in the editor to be corrected; 16 bytes go through.
    name = _top_name(page, 0)
    assert name.input_value() == "办事服务ABCDE"
    name.fill("办事服务ABCD")
    assert page.locator("#menu-problems li").count() == 0
    _publish(page)
    assert [b["name"] for b in emulator.state()["menu"]["button"]] == ["办事服务ABCD", "联系我们", "互动"]
