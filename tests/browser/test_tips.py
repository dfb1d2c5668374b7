"""随手拍 end to end: a citizen files a tip on a phone (three photos, the phone's position), the console takes it
to 已办结, and the citizen's template messages show up in the WeChat emulator."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from models import Tip, TipStatus
from server.extensions import db
from server.services import tips
from tests import factories
from tests.browser.conftest import PHONE, login, shoot
from tests.services.test_images import jpeg_bytes

CITIZEN = "o-phone-citizen"
POSITION = {"latitude": 31.2304, "longitude": 121.4737}


@pytest.fixture
def located_phone(browser, live_server, committed_db):
    """A phone whose owner allowed the page to read its position."""
    context = browser.new_context(base_url=live_server.url, **PHONE)
    context.grant_permissions(["geolocation"], origin=live_server.url)
    context.set_geolocation({**POSITION, "accuracy": 12})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_file_on_a_phone_and_follow_it_to_resolved(located_phone, page, live_server, emulator):
    phone = located_phone
    emulator.hook("users", {"users": [{"openid": CITIZEN, "subscribe": 1}, {"openid": "o-liaison-phone"}]})
    emulator.hook("oauth", {"auto_openid": CITIZEN})
    pudong = factories.unit("浦东分局")
    factories.staff("editor1", "editor", name="李编辑")
    liaison = factories.staff("liaison1", "liaison", unit=pudong, name="王联络")
    liaison.openid = "o-liaison-phone"
    pudong.post_a_id = liaison.id
    db.session.commit()

    # -- the citizen, on a phone inside WeChat ------------------------------------------------------------------------
    phone.goto("/m/")
    phone.click("text=随手拍")
    phone.wait_for_url("**/m/tips/new")
    phone.click(".chips >> text=占道经营")
    phone.fill("#description", "小区门口有人占道摆摊卖水果，行人只能走机动车道")
    phone.set_input_files(
        "#photos",
        [{"name": f"IMG_{i}.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(gps=True, colour=c)} for i, c in
         enumerate(("red", "green", "blue"))],
    )  # fmt: skip
    assert phone.locator("#photo-previews img").count() == 3
    phone.click("#locate")
    phone.wait_for_function("document.querySelector('#loc-status').textContent.includes('已定位')")
    assert phone.input_value("#latitude") == "31.230400"
    phone.fill("#phone", "13800001111")
    shoot(phone, "15-tip-form")
    phone.click("#submit")
    phone.wait_for_url(re.compile(r"/m/tips/[A-Z2-9]{8}\?filed=1$"))
    number = phone.locator("#tracking-no").inner_text()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", number)
    body = phone.inner_text("body")
    assert "提交成功" in body and "已定位（北纬 31.2304，东经 121.4737）" in body
    assert phone.locator(".gallery img").count() == 3
    tip = db.session.scalars(sa.select(Tip)).one()
    assert tip.display_no == number and len(tip.photos) == 3
    assert round(tip.latitude, 4) == POSITION["latitude"] and tip.category == "占道经营"

    # -- the editor accepts and dispatches ----------------------------------------------------------------------------
    login(page, "editor1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.click(".sidebar >> text=线索")
    page.click(f"text={number}")
    page.fill("form[data-action=accept] input[name=note]", "已受理，正在安排处理")
    page.click("form[data-action=accept] button")
    page.wait_for_selector(".flash.success")
    page.select_option("form[data-action=dispatch] select[name=unit_id]", label="浦东分局")
    page.click("form[data-action=dispatch] button")
    page.wait_for_selector("text=已更新为「已派发」")
    shoot(page, "16-tip-detail")
    page.click("text=退出")

    # -- the unit's liaison works it and closes it --------------------------------------------------------------------
    login(page, "liaison1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/tips/{tip.id}")
    page.click("form[data-action=start] button")
    page.wait_for_selector("text=已更新为「处理中」")
    page.fill("form[data-action=resolve] input[name=note]", "摊位已劝离，现场已恢复通行")
    page.click("form[data-action=resolve] button")
    page.wait_for_selector("text=已更新为「已办结」")
    assert db.session.get(Tip, tip.id, populate_existing=True).status is TipStatus.RESOLVED

    # -- the outbox worker sends the notices (the live server has no Celery worker: this process is it) --------------
    while tips.deliver_due_notices():
        pass
    sent = emulator.state()["templates_sent"]
    to_citizen = [t for t in sent if t["touser"] == CITIZEN]
    assert [t["data"]["phrase2"]["value"] for t in to_citizen] == ["已受理", "已办结"]
    assert to_citizen[1]["data"]["thing4"]["value"].startswith("摊位已劝离")
    assert [t["data"]["character_string1"]["value"] for t in sent if t["touser"] == "o-liaison-phone"] == [number]

    # -- and the citizen sees the history -----------------------------------------------------------------------------
    phone.reload()
    history = phone.inner_text("#history")
    for label in ("已提交", "已受理", "已派发", "处理中", "已办结"):
        assert label in history
    assert "摊位已劝离" in history and "浦东分局" in history
    shoot(phone, "17-tip-citizen-history")


def open_form_filled(phone, emulator) -> None:
    """The 随手拍 form opened from WeChat, with a category, a description and an address (no photos yet)."""
    emulator.hook("oauth", {"auto_openid": CITIZEN})
    phone.goto("/m/tips/new")
    phone.click(".chips >> text=占道经营")
    phone.fill("#description", "店外堆放杂物占用人行道已经一周")
    phone.fill("#address", "世纪大道 100 号")


def test_a_refused_photo_is_shown_in_place_and_nothing_typed_or_picked_is_lost(located_phone, live_server, emulator):
    phone = located_phone
    open_form_filled(phone, emulator)
    good = {"name": "IMG_1.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(colour="red")}
    fake = {"name": "IMG_2.jpg", "mimeType": "image/jpeg", "buffer": b"this is no photo" * 100}
    phone.set_input_files("#photos", [good, fake])
    phone.click("#submit")
    phone.wait_for_selector("#form-error")  # the server's refusal, on the same page
    assert "第 2 张照片" in phone.inner_text("#form-error") and "/m/tips/new" in phone.url
    assert phone.locator("#photo-previews img").count() == 2
    assert phone.input_value("#description") == "店外堆放杂物占用人行道已经一周"
    assert phone.inner_text("#submit") == "提交线索" and phone.is_enabled("#submit")
    phone.click('button[aria-label="删除照片 2"]')
    phone.click("#submit")
    phone.wait_for_url(re.compile(r"/m/tips/[A-Z2-9]{8}\?filed=1$"))
    tip = db.session.scalars(sa.select(Tip)).one()
    assert len(tip.photos) == 1 and tip.address == "世纪大道 100 号"


def test_a_proxys_refusal_is_shown_without_a_second_upload(located_phone, live_server, emulator):
    phone = located_phone
    posts = []

    def proxy(route):  # nginx's own 413 page, before the app
        posts.append(route.request.method)
        route.fulfill(status=413, content_type="text/html", body="<html>413 Request Entity Too Large</html>")

    phone.route("**/m/tips", proxy)  # the form's POST only, not /m/tips/new
    open_form_filled(phone, emulator)
    phone.set_input_files("#photos", [{"name": "a.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(colour="red")}])
    phone.click("#submit")
    phone.wait_for_selector("#form-error")
    assert "照片总量超过了服务器允许的大小" in phone.inner_text("#form-error") and posts == ["POST"]
    assert phone.locator("#photo-previews img").count() == 1 and phone.is_enabled("#submit")


def test_back_after_filing_gives_an_empty_form_and_the_way_to_the_tip(located_phone, live_server, emulator):
    phone = located_phone
    open_form_filled(phone, emulator)
    phone.set_input_files("#photos", [{"name": "a.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(colour="red")}])
    first_key = phone.input_value("input[name=submit_key]")
    phone.click("#submit")
    phone.wait_for_url(re.compile(r"/m/tips/[A-Z2-9]{8}\?filed=1$"))
    filed = phone.url
    phone.go_back()
    phone.wait_for_selector("#filed-note")
    assert phone.input_value("#description") == "" and phone.locator("#photo-previews img").count() == 0
    assert phone.get_attribute("#filed-note a", "href") in filed
    assert phone.input_value("input[name=submit_key]") != first_key


def test_a_liaison_handles_a_tip_on_a_phone_without_scrolling_sideways(phone_page, live_server, emulator):
    # Liaisons open the dispatch notice on their phones: the tip's page must fit a 375 px screen (its tables
    # pushed the page to ~465 px, leaving the 办理 buttons half off-screen and hard to tap).
    pudong = factories.unit("浦东分局")
    editor = factories.staff("editor1", "editor", name="李编辑")
    factories.staff("liaison1", "liaison", unit=pudong, name="王联络")
    tip = tips.submit_tip(
        CITIZEN,
        category="占道经营",
        description="小区门口有人占道摆摊卖水果，行人只能走机动车道",
        photos=[jpeg_bytes(colour="red"), jpeg_bytes(colour="green")],
        latitude=POSITION["latitude"],
        longitude=POSITION["longitude"],
        phone="13800001111",
        submit_key="liaison-phone-test-key-0001",
    )
    tips.transition(tip.id, "dispatch", editor, unit_id=pudong.id, note="请尽快核查并反馈处理结果")
    phone = phone_page
    phone.set_viewport_size({"width": 375, "height": 812})
    login(phone, "liaison1", factories.PASSWORD)
    phone.wait_for_url("**/admin/")
    phone.goto(f"/admin/tips/{tip.id}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.click("form[data-action=start] button")
    phone.wait_for_selector("text=已更新为「处理中」")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.fill("form[data-action=resolve] input[name=note]", "摊位已劝离，现场已恢复通行")
    phone.click("form[data-action=resolve] button")
    phone.wait_for_selector("text=已更新为「已办结」")
