"""7·15 公众开放日 end to end on phones: a citizen registers (required fields), sees the check-in QR code and cancels;
with the one place taken, a second citizen waits, is offered the place when the first cancels (the template message is
in the emulator's record) and confirms; staff then check the QR code in on the scan page: 有效, 已签到, 无效."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import Registration, RegistrationStatus
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import events
from server.services.events import Applicant
from tests import factories
from tests.browser.conftest import login, shoot
from tests.services.test_events import make_event

ALICE, BOB = "o-phone-alice", "o-phone-bob"
OFFER_TEXT = "候补名额请于{:%m-%d %H:%M}前确认"  # the deadline: else only 我的报名 says it


def open_as(phone, emulator, openid: str, path: str) -> None:
    """Open a page from the WeChat menu: the emulator's OAuth answers with this citizen's openid."""
    emulator.hook("oauth", {"auto_openid": openid})
    phone.goto(path)
    phone.wait_for_url(re.compile(re.escape(path) + "(#wechat_redirect)?$"))  # browsers keep OAuth's fragment


def register(phone, name: str, mobile: str) -> None:
    phone.fill("#f-name", name)
    phone.fill("#f-phone", mobile)
    phone.click("#ev-submit")
    phone.wait_for_url("**/m/events/mine")


def image_shown(img) -> bool:
    """Whether the image loaded and decoded (False for a broken one), waiting for it if it is still loading."""
    return img.evaluate(
        """img => img.complete ? img.naturalWidth > 0 : new Promise(done => {
             img.addEventListener("load", () => done(img.naturalWidth > 0));
             img.addEventListener("error", () => done(false));
           })"""
    )


def registration(openid: str) -> Registration:
    return db.session.scalars(
        sa.select(Registration).filter_by(openid=openid).execution_options(populate_existing=True)
    ).one()


def test_register_wait_promote_and_check_in(phone_page, second_phone, page, live_server, emulator):
    alice, bob = phone_page, second_phone
    for phone in (alice, bob):
        phone.on("dialog", lambda dialog: dialog.accept())  # 「确定取消报名吗？」
    emulator.hook("users", {"users": [{"openid": ALICE}, {"openid": BOB}]})
    event, (session,) = make_event(quota=1, companions=0, fields=("name", "phone"))
    factories.staff("editor1", "editor", name="李编辑")
    detail = f"/m/events/{event.id}"

    # -- Alice takes the only place, sees her QR code ------------------------------------------------------------------
    open_as(alice, emulator, ALICE, detail)
    assert alice.inner_text(f'li[data-session="{session.id}"] .left') == "剩余 1"
    alice.click("#ev-submit")  # the browser refuses an empty required field: nothing is sent
    assert alice.locator("#f-name:invalid").count() == 1 and registration_count() == 0
    assert alice.eval_on_selector("#f-name", "el => el.validationMessage") == "请填写姓名"  # not the phone's English
    alice.fill("#f-phone", "12345")
    alice.click("#ev-submit")
    assert alice.eval_on_selector("#f-phone", "el => el.validationMessage") == "请填写 11 位手机号"
    alice.fill("#f-name", "张三")
    alice.fill("#f-phone", "13800001111")
    shoot(alice, "40-event-detail")
    alice.click("#ev-submit")
    alice.wait_for_url("**/m/events/mine")
    card = alice.locator(".card", has_text="7·15 公众开放日")
    assert "报名成功" in card.inner_text() and "报名成功！入场时请出示二维码。" in alice.inner_text("body")
    qr = card.locator("img.qr")
    assert image_shown(qr)
    qr_src = qr.get_attribute("src") or ""
    shoot(alice, "41-event-mine-qr")

    # -- Bob finds it full and joins the waiting list ------------------------------------------------------------------
    open_as(bob, emulator, BOB, detail)
    assert bob.inner_text(f'li[data-session="{session.id}"] .left') == "已满"
    bob.wait_for_function("document.querySelector('#ev-submit').textContent === '加入候补'")
    assert bob.is_visible("#ev-full-hint")
    register(bob, "李四", "13900002222")
    assert "候补第 1 位" in bob.inner_text("body")
    shoot(bob, "42-event-waiting")

    # -- Alice cancels; the place is offered to Bob ----------------------------------------------------------------
    alice.click("text=取消报名")
    alice.wait_for_selector("text=已取消报名，名额已释放。")
    assert "已取消" in alice.locator(".card", has_text="7·15 公众开放日").inner_text()
    assert alice.locator("img.qr").count() == 0
    assert alice.request.get(qr_src).status == 404  # the old code is no longer served
    assert registration(BOB).status is RegistrationStatus.OFFERED
    # The live server has no Celery worker: this process runs the sweep that sends what is queued.
    events.deliver_due_notices()
    offers = [m for m in emulator.state()["templates_sent"] if m["touser"] == BOB]
    held = db.session.scalar(sa.select(Registration.hold_expires_at).where(Registration.openid == BOB))
    assert [m["data"]["thing4"]["value"] for m in offers] == [OFFER_TEXT.format(held.astimezone(LOCAL_TZ))]
    assert offers[0]["data"]["thing1"]["value"] == "7·15 公众开放日"
    assert offers[0]["url"] == live_server.url + "/m/events/mine"
    assert not [m for m in emulator.state()["templates_sent"] if m["touser"] == ALICE]

    bob.reload()
    assert "候补到位，待确认" in bob.inner_text("body") and "请尽快确认" in bob.inner_text("body")
    shoot(bob, "43-event-offered")
    bob.click("text=确认参加")
    bob.wait_for_selector("text=已确认参加，报名成功！")
    bob_qr = bob.locator("img.qr")
    assert image_shown(bob_qr)
    reg = registration(BOB)
    assert reg.status is RegistrationStatus.CONFIRMED
    token = events.checkin_token(reg)
    # The code on Bob's screen is this token (the QR image is deterministic).
    assert bob.request.get(bob_qr.get_attribute("src") or "").body() == events.qr_png(token)
    shoot(bob, "44-event-confirmed")

    # -- staff check it in, without a camera ---------------------------------------------------------------------------
    login(page, "editor1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/events/{event.id}")
    page.click("text=扫码签到")
    page.wait_for_url(f"**/admin/events/{event.id}/scan")
    assert "手动输入" in page.inner_text("#camera-hint")  # headless Chromium has no camera: the fallback is offered
    shoot(page, "45-event-scan")

    def scan(text: str) -> tuple[str, str]:
        page.fill("#token", text)
        page.click("#manual button")
        page.wait_for_function("!document.querySelector('#result strong').textContent.includes('核验中')")
        return page.inner_text("#result strong"), page.inner_text("#detail")

    status, detail_text = scan(token)
    assert status == "有效" and "签到成功" in detail_text and "李*" in detail_text
    shoot(page, "46-event-scan-valid")
    checked_at = registration(BOB).checked_in_at
    assert checked_at is not None
    status, detail_text = scan(token)  # the same code again, at once
    assert status == "已签到"
    assert re.search(r"签到时间 \d\d月\d\d日 \d\d:\d\d:\d\d", detail_text)
    assert events.local_dt(checked_at, "%H:%M:%S") in detail_text
    shoot(page, "47-event-scan-used")
    prefix, body, signature = token.split(".")
    forged = events._b64(f"{reg.id}:{session.id}:forged-ticket".encode())
    status, detail_text = scan(f"{prefix}.{forged}.{signature}")
    assert status == "无效" and "无效二维码" in detail_text
    assert registration(BOB).checked_in_at == checked_at

    # -- a visitor who never registered is added at the gate, from the same page ---------------------------------------
    page.click("details.walk-in summary")
    page.fill("details.walk-in input[name=name]", "王大爷")
    page.fill("details.walk-in input[name=phone]", "13900001111")
    page.click("text=登记并签到")
    page.wait_for_url(f"**/admin/events/{event.id}/walk-in")
    assert "本场名额已满" in page.inner_text(".flash.error")  # Bob holds the only place
    # the refused form comes back open with what was typed: only the box to tick
    assert page.input_value("details.walk-in input[name=name]") == "王大爷"
    assert page.input_value("details.walk-in input[name=phone]") == "13900001111"
    page.check("details.walk-in input[name=over_quota]")
    page.click("text=登记并签到")
    page.wait_for_url(f"**/admin/events/{event.id}/scan?session={session.id}")
    assert page.inner_text(".flash.success") == "现场登记成功，已签到"
    shoot(page, "48-event-walk-in")
    walk_in = db.session.scalar(sa.select(Registration).filter_by(walk_in=True))
    assert walk_in.session_id == session.id and walk_in.checked_in_at is not None

    bob.reload()
    assert "已于" in bob.inner_text("body") and "签到" in bob.inner_text("body")


def registration_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Registration)) or 0


def test_a_session_called_off_reaches_the_citizen(phone_page, page, live_server, emulator):
    """An editor calls the first session off (typhoon); Alice, registered for it, sees why on both pages and can still
    pick the other session; the notice with the reason is in the emulator's record."""
    alice = phone_page
    emulator.hook("users", {"users": [{"openid": ALICE}]})
    event, (first, second) = make_event(quota=5, companions=0, fields=("name", "phone"), sessions=2)
    factories.staff("editor1", "editor", name="李编辑")
    detail = f"/m/events/{event.id}"
    open_as(alice, emulator, ALICE, detail)
    register(alice, "张三", "13800001111")  # the first session is picked by default
    assert registration(ALICE).session_id == first.id

    login(page, "editor1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/events/{event.id}?session={first.id}")
    page.on("dialog", lambda dialog: dialog.accept())  # 「确定取消 … 场？…此操作不能撤回。」
    page.click("text=取消本场次")
    page.fill("input[name=reason]", "受台风影响，本场活动取消")
    page.click("button:has-text('取消本场次')")
    page.wait_for_selector(".flash.success")
    assert page.inner_text(".flash.success") == "场次已取消，将向 1 位报名者（含候补）发送取消通知"
    assert "受台风影响，本场活动取消" in page.inner_text(".flash.error")  # the banner over the list
    shoot(page, "49-event-called-off")

    events.deliver_due_notices()  # no Celery worker beside the live server: the sweep sends what is queued
    (notice,) = emulator.state()["templates_sent"]
    assert notice["touser"] == ALICE and notice["data"]["thing4"]["value"] == "已取消：受台风影响，本场活动取消"
    alice.reload()
    assert "本场次已由主办方取消：受台风影响，本场活动取消" in alice.inner_text("body")
    shoot(alice, "50-event-called-off-mine")
    open_as(alice, emulator, ALICE, detail)
    assert alice.inner_text(f'li[data-session="{first.id}"] .called-off') == "已取消"
    assert alice.is_disabled(f"#s{first.id}") and alice.is_checked(f"#s{second.id}")
    register(alice, "张三", "13800001111")  # the registration was cancelled: she may take the other session
    assert registration_count() == 2
    assert events.active_registration(ALICE, event.id).session_id == second.id


def test_a_party_bigger_than_the_places_left_is_told_before_sending(phone_page, live_server, emulator):
    event, (session,) = make_event(quota=2, companions=1)
    events.register("o-someone", event.id, session.id)  # one place left
    open_as(phone_page, emulator, ALICE, f"/m/events/{event.id}")
    assert phone_page.inner_text(f'li[data-session="{session.id}"] .left') == "剩余 1"
    assert phone_page.inner_text("#ev-submit") == "立即报名" and not phone_page.is_visible("#ev-short-hint")
    phone_page.select_option("#companions", "1")
    phone_page.wait_for_selector("#ev-short-hint", state="visible")
    assert "仅剩 1 个名额，不够 2 人同行" in phone_page.inner_text("#ev-short-hint")
    assert phone_page.inner_text("#ev-submit") == "加入候补"
    phone_page.select_option("#companions", "0")
    phone_page.wait_for_selector("#ev-short-hint", state="hidden")
    assert phone_page.inner_text("#ev-submit") == "立即报名"


def test_a_refusal_is_shown_in_place_and_success_leaves_no_form_post_behind(phone_page, live_server, emulator):
    event, (session,) = make_event(quota=1, fields=("id_number",))
    detail = f"/m/events/{event.id}"
    open_as(phone_page, emulator, ALICE, detail)
    phone_page.fill("#f-id_number", "110101199003070000")  # the right shape, a wrong check digit: the server says so
    phone_page.click("#ev-submit")
    phone_page.wait_for_selector("#ev-error", state="visible")
    assert "身份证号不正确" in phone_page.inner_text("#ev-error")
    assert phone_page.url.split("#")[0].endswith(detail)
    assert phone_page.input_value("#f-id_number") == "110101199003070000"  # kept
    assert phone_page.is_enabled("#ev-submit") and registration_count() == 0
    phone_page.fill("#f-id_number", "11010519491231002X")
    phone_page.click("#ev-submit")
    phone_page.wait_for_url("**/m/events/mine")
    assert "报名成功！入场时请出示二维码。" in phone_page.inner_text("body")
    phone_page.go_back()  # the page before is the event page, not a form submission to send again
    assert phone_page.url.split("#")[0].endswith(detail)


def test_an_old_webview_without_fetch_still_signs_up(phone_page, live_server, emulator):
    event, (session,) = make_event(quota=5)
    phone_page.add_init_script("delete window.fetch")  # as an old X5 WebView
    open_as(phone_page, emulator, BOB, f"/m/events/{event.id}")
    phone_page.click("#ev-submit")
    phone_page.wait_for_url("**/m/events/mine")
    assert "报名成功！入场时请出示二维码。" in phone_page.inner_text("body") and registration_count() == 1


def test_a_party_bigger_than_the_session_is_told_to_shrink_not_to_wait(phone_page, live_server, emulator):
    event, (session,) = make_event(quota=2, companions=3)
    open_as(phone_page, emulator, ALICE, f"/m/events/{event.id}")
    phone_page.select_option("#companions", "2")  # a party of 3 for 2 places
    phone_page.wait_for_selector("#ev-over-hint", state="visible")
    assert "本场共 2 个名额，3 人无法一同报名" in phone_page.inner_text("#ev-over-hint")
    assert phone_page.is_disabled("#ev-submit") and not phone_page.is_visible("#ev-short-hint")
    phone_page.select_option("#companions", "1")
    phone_page.wait_for_selector("#ev-over-hint", state="hidden")
    assert phone_page.is_enabled("#ev-submit")


def test_a_double_tap_on_confirm_sends_once(phone_page, live_server, emulator):
    # Offered a place from the waiting list, a citizen taps 确认参加 twice: one request, and no error after success.
    event, (session,) = make_event(quota=1, companions=0)
    first, _ = events.register(ALICE, event.id, session.id, Applicant())
    events.register(BOB, event.id, session.id, Applicant())
    events.cancel(ALICE, first.id)
    assert registration(BOB).status is RegistrationStatus.OFFERED
    phone = phone_page
    open_as(phone, emulator, BOB, "/m/events/mine")
    posts = []
    phone.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    # the second tap a moment later, while the first request is under way
    phone.evaluate(
        "() => { const b = document.querySelector('button[type=submit]'); b.click(); setTimeout(() => b.click(), 5); }"
    )
    phone.wait_for_selector("text=已确认参加")
    assert len(posts) == 1 and phone.locator(".error").count() == 0
    assert registration(BOB).status is RegistrationStatus.CONFIRMED
