"""Auto-replies: a rule added in the console, checked in the test box, answers on the live gateway's other processes."""

from __future__ import annotations

from tests import factories
from tests.browser.conftest import login, shoot
from tests.browser.helpers import deliver, poll_reply, reply_text, text_message

OPEN_DAY = "城管开放日每月第一个周六举办，回复「报名」即可预约参观。"


def test_keyword_rule_reaches_the_gateway(page, live_server, emulator, account):
    factories.rule("投诉", "请拨打 12319 或点菜单「我要举报」。", priority=5)
    factories.rule("^报名$", "报名已收到，稍后短信通知。", match_type="regex")
    factories.staff("editor1", "editor", name="李编辑")
    question = "请问开放日怎么报名？"
    # Before the rule exists the gateway has nothing to say to this message (and a worker caches the rules).
    assert reply_text(deliver(live_server, account, text_message(account, "oFan1", question))) is None

    login(page, "editor1", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.click(".sidebar >> text=自动回复")
    page.click("text=新增规则")
    page.wait_for_url("**/admin/replies/new")
    page.fill("#name", "开放日报名")
    page.select_option("#match_type", "contains")
    page.fill("#pattern", "开放日")
    page.fill("#priority", "10")
    page.fill("#reply_text", OPEN_DAY)
    assert page.locator("#media_id").is_hidden()  # only the chosen reply type's fields
    shoot(page, "07-reply-form")
    page.click("button:has-text('保存')")
    page.wait_for_url("**/admin/replies")
    assert "已保存：开放日报名" in page.locator(".flash").inner_text()
    row = page.locator("tbody tr", has_text="开放日报名")
    assert "包含" in row.inner_text() and OPEN_DAY in row.inner_text()

    # The test box picks the new rule, and says why.
    page.fill("#test-box input[name=msg]", question)
    page.click("#test-box button:has-text('测试')")
    result = page.locator("#test-result")
    result.wait_for()
    assert "会由规则 开放日报名 回复（包含匹配「开放日」，优先级 10）" in result.inner_text()
    assert result.locator("pre").inner_text() == OPEN_DAY
    shoot(page, "06-replies")

    # A signed message to the live gateway (three gunicorn workers) gets the new rule's text within about a second.
    def send(attempt):
        return deliver(live_server, account, text_message(account, f"oFan{attempt % 5}", question))

    assert poll_reply(send, OPEN_DAY) == OPEN_DAY
    for n in range(6):  # every worker, not just the one that happened to answer first
        assert reply_text(send(n)) == OPEN_DAY
