"""The scan page inside WeChat on an iPhone (no BarcodeDetector): WeChat's own scanner through the JS-SDK, whose
script is stubbed with a wx whose scanQRCode answers a real check-in token; a wx.error falls back to manual entry."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from models import Registration
from server.extensions import db
from server.services import events
from server.wechat import jssdk
from tests import factories
from tests.browser.conftest import PHONE, login
from tests.services.test_events import make_event

JSSDK = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN"
)
# What jweixin's calls look like to the page; `window.wxStub` keeps what the page passed, for the test to read.
STUB = """
window.wxStub = { config: null, scans: 0 };
window.wx = {
  config: function (c) { wxStub.config = c; },
  ready: function (cb) { if (!%(fail)s) setTimeout(cb, 0); },
  error: function (cb) { if (%(fail)s) setTimeout(function () { cb({ errMsg: "config:invalid signature" }); }, 0); },
  scanQRCode: function (o) {
    setTimeout(function () {
      o.success({ errMsg: "scanQRCode:ok", resultStr: %(token)s });
      wxStub.scans += 1;  // after success: the page shows 核验中… until the server answers
    }, 0);
  }
};
"""


@pytest.fixture
def wechat_phone(browser, live_server, committed_db):
    """Staff's iPhone, in WeChat: its user agent, and Chromium's BarcodeDetector taken away as WebKit lacks it."""
    context = browser.new_context(base_url=live_server.url, user_agent=WECHAT_UA, **PHONE)
    context.add_init_script("delete window.BarcodeDetector")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def serve_stub(page, token: str, *, fail: bool = False) -> None:
    body = STUB % {"token": json.dumps(token), "fail": json.dumps(fail)}
    page.route(JSSDK, lambda route: route.fulfill(body=body, content_type="application/javascript"))


def tap_scan(page) -> tuple[str, str]:
    before = page.evaluate("wxStub.scans")
    page.click("#wx-scan")
    page.wait_for_function(
        "n => wxStub.scans > n && document.querySelector('#result strong').textContent !== '核验中…'", arg=before
    )
    return page.inner_text("#result strong"), page.inner_text("#detail")


def checked_in_at(reg_id: int):
    return db.session.scalar(
        sa.select(Registration.checked_in_at).where(Registration.id == reg_id).execution_options(populate_existing=True)
    )


def test_wechat_scanner_checks_in_then_says_used_and_minds_the_session(wechat_phone, live_server, emulator):
    page = wechat_phone
    event, (first, second) = make_event(sessions=2)
    reg, _ = events.register("o-wx-alice", event.id, second.id)
    token = events.checkin_token(reg)
    factories.staff("liaison1", "liaison", unit=factories.unit())
    serve_stub(page, token)
    login(page, "liaison1", factories.PASSWORD)
    page.wait_for_url("**/admin/")

    page.goto(f"/admin/events/{event.id}/scan")
    page.wait_for_selector("#wx-scan:visible")
    assert page.is_hidden("#video-wrap") and "扫一扫" in page.inner_text("#camera-hint")
    config = page.evaluate("wxStub.config")
    (ticket,) = emulator.state()["jsapi_tickets"]
    assert config["jsApiList"] == ["scanQRCode"]
    assert config["signature"] == jssdk.signature(ticket, config["nonceStr"], config["timestamp"], page.url)

    status, detail = tap_scan(page)
    assert status == "有效" and "签到成功" in detail
    at = checked_in_at(reg.id)
    assert at is not None
    status, detail = tap_scan(page)  # the same code, scanned again at once
    assert status == "已签到" and events.local_dt(at, "%H:%M:%S") in detail

    # At the first session's door the ticket (for the second) is refused, whatever its state.
    page.select_option("#session", str(first.id))
    page.wait_for_url(f"**/admin/events/{event.id}/scan?session={first.id}")
    page.wait_for_selector("#wx-scan:visible")
    status, detail = tap_scan(page)
    when = events.local_dt(second.starts_at, "%m-%d %H:%M")
    assert status == "无效" and f"不是本场次的二维码（该票为 {when} 场）" in detail
    assert checked_in_at(reg.id) == at


def test_a_failed_wechat_config_falls_back_to_manual_entry(wechat_phone, emulator):
    page = wechat_phone
    event, (session,) = make_event()
    factories.staff("liaison1", "liaison", unit=factories.unit())
    serve_stub(page, "unused", fail=True)
    login(page, "liaison1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/events/{event.id}/scan")
    page.wait_for_function("document.querySelector('#camera-hint').textContent.includes('手动输入')")
    assert "微信扫一扫不可用" in page.inner_text("#camera-hint")
    assert page.is_hidden("#wx-scan")
