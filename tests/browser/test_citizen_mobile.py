"""Every citizen page on the narrowest phones WeChat runs on (320 and 375 px wide), filled with the long texts that
editors and citizens really type: nothing may widen the page (WeChat then zooms the page out or scrolls it sideways),
no text is smaller than 14 px, and whatever a thumb taps (buttons, fields, links standing on their own) is at least
44 px tall; a link inside a sentence is exempt, as in WCAG 2.5.8."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.extensions import db
from server.services import surveys, tips, votes
from tests.browser.test_events import open_as
from tests.services.test_events import make_event
from tests.services.test_images import jpeg_bytes

CITIZEN = "o-phone-narrow"
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
)
URL = "https://www.example.gov.cn/news/2026/zuimeichengguanren-pingxuan-huodong-tongzhi-and-more.html"
LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 3


@pytest.fixture(params=[(320, 568), (375, 667)], ids=["320", "375"])
def narrow_phone(request, browser, live_server, committed_db):
    width, height = request.param
    context = browser.new_context(
        base_url=live_server.url,
        locale="zh-CN",
        viewport={"width": width, "height": height},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=WECHAT_UA,
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def long_texts() -> list[str]:
    """A campaign, candidates, a survey, an event and a tip with long names and unbroken URLs; their pages."""
    now = datetime.now(UTC)
    campaign = votes.save_campaign(
        title="2026年度“最美城管人”评选活动暨城市管理综合执法系统先进典型网络投票",
        description=f"为弘扬城管队伍正能量，现开展评选。\n详见 {URL}",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=3),
        votes_per_day=3,
        per_candidate_per_day=1,
        followers_only=False,
        results_policy="live",
    )
    votes.save_candidate(
        campaign,
        name="阿卜杜热合曼·买买提明·艾尔肯江",
        unit_name="黄浦区城管执法局南京东路街道中队（外滩风貌区综合执法队）",
        story=f"联系方式 {URL} {LATIN}",
        photo=jpeg_bytes(colour="blue"),
    )
    votes.save_candidate(campaign, name=LATIN[:32], unit_name=LATIN[:64], story="")
    candidate = campaign.candidates[0]
    survey = surveys.save_survey(
        title="2026年第四季度城市管理市民满意度测评问卷（市容环境卫生专项）",
        intro=f"问卷说明见 {URL}",
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        questions=f"[单选] 您对市容环境是否满意\n满意\n{LATIN[:64]}\n[填空 选填] 其他意见和建议",
    )
    event, _ = make_event(fields=("name", "phone", "id_number"))
    event.description = f"活动须知：{URL}"
    db.session.commit()
    tip = tips.submit_tip(
        CITIZEN,
        category="占道经营",
        description=f"小区门口有人占道摆摊，照片原图见 {URL}",
        photos=[jpeg_bytes(colour="red")],
        address=f"世纪大道{LATIN}",
        phone="13800001111",
        submit_key="narrow-phone-test-key-0001",
    )
    return [
        f"/m/vote/{campaign.id}",
        f"/m/vote/{campaign.id}/c/{candidate.id}",
        f"/m/vote/{campaign.id}/c/{candidate.id}/share",
        f"/m/survey/{survey.id}",
        f"/m/events/{event.id}",
        f"/m/tips/{tip.tracking_no}",
        "/m/tips",
        "/m/tips/new",
        "/m/events",
        "/m/",
        "/m/events/mine",
        "/m/contacts",
    ]


# What a citizen reads and taps on the page: text under 14 px, and tap targets under 44 px tall.
FINDINGS = """() => {
  const small = [], tiny = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    if (!box.width || !box.height || style.visibility === "hidden") continue;
    const own = [...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (own && parseFloat(style.fontSize) < 14) tiny.push(`${el.tagName} ${style.fontSize} ${el.textContent.trim()}`);
    const target = el.matches("button, select, textarea, input:not([type=hidden], [type=radio], [type=checkbox])")
      || (el.matches("a") && el.namespaceURI === "http://www.w3.org/1999/xhtml" && style.display !== "inline");
    if (target && box.height < 44) small.push(`${el.tagName} ${Math.round(box.height)}px ${el.textContent.trim()}`);
  }
  return {small, tiny};
}"""


def test_long_texts_wrap_instead_of_widening_the_page(narrow_phone, live_server, emulator):
    phone = narrow_phone
    width = phone.viewport_size["width"]
    pages = long_texts()
    open_as(phone, emulator, CITIZEN, pages[0])
    for path in pages:
        phone.goto(path)
        # A mobile browser widens its layout viewport (innerWidth too) to the content: compare with the screen.
        assert phone.evaluate("document.documentElement.scrollWidth") <= width, path


def test_text_is_readable_and_targets_are_big_enough_for_a_thumb(narrow_phone, live_server, emulator):
    phone = narrow_phone
    pages = long_texts()
    open_as(phone, emulator, CITIZEN, pages[0])
    for path in pages:
        phone.goto(path)
        assert phone.evaluate(FINDINGS) == {"small": [], "tiny": []}, path


def test_the_id_number_field_is_not_corrected_by_the_phone(narrow_phone, live_server, emulator):
    # A number pad has no X, so the field stays text; but no auto-correction or lower-case x from the keyboard.
    event, _ = make_event(fields=("name", "phone", "id_number"))
    open_as(narrow_phone, emulator, CITIZEN, f"/m/events/{event.id}")
    phone_field = narrow_phone.locator("#f-phone")
    assert phone_field.get_attribute("type") == "tel" and phone_field.get_attribute("inputmode") == "numeric"
    id_field = narrow_phone.locator("#f-id_number")
    assert id_field.get_attribute("autocapitalize") == "characters"
    assert id_field.get_attribute("autocorrect") == "off" and id_field.get_attribute("spellcheck") == "false"
