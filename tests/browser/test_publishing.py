"""An article from the liaison's first draft to 已发布: review round trip with a diff, a push on the calendar, the
beat job publishing it through the emulator, and WeChat's PUBLISHJOBFINISH settling it on the live gateway."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import Article, ArticlePush, PushStatus
from server.extensions import db
from server.services import columns, publishing
from tests import factories
from tests.browser.conftest import login, shoot
from tests.browser.helpers import deliver
from tests.services.test_images import jpeg_bytes


@pytest.fixture
def people(committed_db):
    """The seed-demo bureau (server/cli.py): the publicity office, 浦东分局 and one account per console role."""
    office = factories.unit("市局宣传处", "department")
    pudong = factories.unit("浦东分局")
    return {
        "editor": factories.staff("editor", "editor", unit=office, name="李编辑"),
        "reviewer": factories.staff("reviewer", "reviewer", unit=office, name="陈审核"),
        "liaison": factories.staff("liaison", "liaison", unit=pudong, name="张联络"),
    }


def _as(browser, live_server, username: str):
    context = browser.new_context(base_url=live_server.url, locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    login(page, username, factories.PASSWORD)
    page.wait_for_url("**/admin/")
    return page


def _type_in_section(page, heading: str, text: str) -> None:
    """Click into the paragraph under one of the column skeleton's headings and type at its end."""
    page.locator(f"#editor h3:has-text('{heading}') + p").click()
    page.keyboard.press("End")
    page.keyboard.type(text)


def test_write_review_schedule_publish(browser, page, live_server, emulator, account, people):
    liaison = page
    login(liaison, "liaison", factories.PASSWORD)
    liaison.wait_for_url("**/admin/")

    # -- the liaison writes the case story in the rich-text editor and submits it ------------------------------------
    liaison.click(".sidebar >> text=发布")
    liaison.click("text=写推文")
    liaison.fill("input[name=title]", "占道经营劝离记")
    liaison.fill("input[name=author]", "浦东城管")
    liaison.fill("input[name=digest]", "陆家嘴路口流动摊贩劝离")
    liaison.select_option("#column-select", label="每日一案")
    liaison.click("#insert-template")
    assert liaison.locator("#editor h3").count() == 4  # 案情—处理—法条—提示
    _type_in_section(liaison, "案情", "6 月 3 日上午，队员在陆家嘴路口发现流动摊贩占道经营。")
    _type_in_section(liaison, "处理", "")
    liaison.click("#editor-toolbar [data-cmd=bold]")
    liaison.keyboard.type("当事人当场收摊。")
    liaison.set_input_files(
        "#body-image", {"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes((800, 600), "green")}
    )  # uploaded at once, shown in the editor; WeChat gets it at publish time
    liaison.wait_for_selector("#editor img[src^='/admin/articles/media/']")
    liaison.fill("textarea[name=legal_refs]", "《城市市容和环境卫生管理条例》第十七条")
    liaison.set_input_files(
        "input[name=cover]", {"name": "cover.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes((1600, 900))}
    )
    shoot(liaison, "30-article-editor")
    liaison.click("#article-form button[type=submit]")
    liaison.wait_for_selector(".flash.success:has-text('已保存')")
    article_url = liaison.url
    article_id = int(re.search(r"/admin/articles/(\d+)$", article_url).group(1))
    body = liaison.inner_html(".article-body")
    assert "<h3>【案情】</h3><p>6 月 3 日上午，队员在陆家嘴路口发现流动摊贩占道经营。</p>" in body
    assert "<h3>【处理】</h3><p><b>当事人当场收摊。</b></p>" in body
    assert liaison.locator(".article-body img").evaluate("img => img.naturalWidth") == 800
    liaison.click("button:has-text('提交审核')")
    assert "待审核" in liaison.inner_text("p:has-text('状态：')")

    # -- the reviewer sends it back with a comment --------------------------------------------------------------------
    reviewer = _as(browser, live_server, "reviewer")
    reviewer.goto("/admin/articles/list?status=submitted")
    reviewer.click("text=占道经营劝离记")
    reviewer.fill("input[placeholder='退回意见（必填）']", "请写明处理依据和结果")
    reviewer.click("button:has-text('退回修改')")
    assert "退回修改" in reviewer.inner_text("p:has-text('状态：')")
    assert "已退回修改，作者会在推文页看到修改意见" in reviewer.inner_text(".flash.success")

    # -- the liaison sees the comment, edits and resubmits -----------------------------------------------------------
    liaison.reload()
    assert "审核意见：请写明处理依据和结果" in liaison.inner_text(".content")
    liaison.click("a:has-text('编辑')")
    _type_in_section(liaison, "处理", "依据条例责令改正，未予处罚。")
    liaison.click("#article-form button[type=submit]")
    liaison.wait_for_selector(".flash.success:has-text('已保存')")
    liaison.click("button:has-text('提交审核')")
    assert "待审核" in liaison.inner_text("p:has-text('状态：')")

    # -- the reviewer sees exactly what changed, and approves ---------------------------------------------------------
    reviewer.goto(article_url)
    diff = reviewer.locator(".diff")
    assert "依据条例责令改正，未予处罚。" in diff.locator(".diff-add").all_inner_texts()[-1]
    assert "v2" in reviewer.inner_text("p:has-text('状态：')")
    shoot(reviewer, "31-article-review-diff")
    reviewer.click("button:has-text('通过')")
    assert "已通过" in reviewer.inner_text("p:has-text('状态：')")

    # -- the editor fills tomorrow's 每日一案 gap from the month calendar -------------------------------------------
    editor = _as(browser, live_server, "editor")
    editor.click(".sidebar >> text=发布")
    day = columns.local_day(datetime.now(UTC)) + timedelta(days=1)
    if day.day == 1:
        editor.click("text=下一月 ›")
    tomorrow = editor.locator("td", has=editor.locator(f"small:text-is('{day.month}/{day.day}')"))
    tomorrow.locator(".gap a:has-text('每日一案')").click()
    editor.wait_for_url("**/admin/articles/pushes/new?**")
    assert editor.input_value("input[name=scheduled_at]") == f"{day.isoformat()}T08:00"
    assert editor.locator("select[name=column_id] option:checked").inner_text().startswith("每日一案")
    editor.check("label:has-text('占道经营劝离记') input")
    assert "头条" in editor.inner_text("label:has-text('占道经营劝离记')")
    shoot(editor, "32-article-push-form")
    editor.click("button:has-text('排期')")
    editor.wait_for_selector(".flash.success:has-text('已排期')")
    push_url = editor.url
    editor.click("text=排期日历")
    if day.day == 1:
        editor.click("text=下一月 ›")
    tomorrow = editor.locator("td", has=editor.locator(f"small:text-is('{day.month}/{day.day}')"))
    assert "08:00 每日一案" in tomorrow.inner_text() and "已排期 · 1 篇" in tomorrow.inner_text()
    assert "缺稿：每日一案" not in tomorrow.inner_text()
    shoot(editor, "33-article-calendar")

    # -- the beat job runs at the slot (this process is the worker), WeChat reports back on the live gateway ----------
    push = db.session.scalars(sa.select(ArticlePush)).one()
    assert publishing.run_due(push.scheduled_at + timedelta(seconds=30)) == [push.id]
    (job,) = emulator.state()["publishes"]
    assert [a["title"] for a in job["articles"]] == ["每日一案｜占道经营劝离记"]
    content = job["articles"][0]["content"]
    assert "依据条例责令改正" in content and "/admin/articles/media/" not in content
    assert len([c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/media/uploadimg"]) == 1
    assert re.search(r'<img src="http[^"]+"', content)  # the body image now points at WeChat's copy
    event = emulator.state()["push_events"][-1]
    assert event["event"]["Event"] == "PUBLISHJOBFINISH"
    assert deliver(live_server, account, event["xml"]) is None
    url = event["event"]["PublishEventInfo"]["article_detail"]["item"][0]["article_url"]
    assert url.startswith(emulator.url)

    editor.goto(article_url)
    assert "已发布" in editor.inner_text("p:has-text('状态：')")
    assert editor.locator(f"a[href='{url}']").count() == 1
    shoot(editor, "34-article-published")
    editor.goto(push_url)
    assert "已发布" in editor.inner_text("p:has-text('状态：')")
    assert db.session.get(Article, article_id, populate_existing=True).url == url
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.PUBLISHED

    # -- and the month's numbers count it for 浦东分局 ------------------------------------------------------------
    editor.click("text=栏目数据")
    editor.goto(f"/admin/articles/numbers?month={day.strftime('%Y-%m')}")
    assert editor.inner_text("tr[data-column='每日一案'] td:nth-child(3)") == "1"
    submitted = "1" if day.day > 1 else "0"  # submitted today: tomorrow may open a new month
    assert editor.inner_text("tr[data-unit='浦东分局']").split() == ["浦东分局", submitted, "1"]


def test_back_after_save_keeps_the_body_in_the_editor(browser, live_server, people):
    """Back from the saved article to 写推文: the browser brings the typed fields back, and the body with them."""
    page = _as(browser, live_server, "liaison")
    page.goto("/admin/articles/new")
    page.fill("input[name=title]", "返回再保存")
    page.locator("#editor").click()
    page.keyboard.type("正文第一段")
    page.click("#article-form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/articles/\d+$"))
    page.go_back()
    page.wait_for_url("**/admin/articles/new")
    # Without the editor taking the kept body back, a second 保存 sent an empty body: 「正文不能为空」, text gone.
    assert "正文第一段" in page.locator("#editor").inner_text()
    page.click("#article-form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/articles/\d+$"))
    assert "正文第一段" in page.locator(".card").last.inner_text()
    page.context.close()


def test_a_push_made_from_the_tab_takes_its_articles_column(browser, live_server, people):
    from tests.services.test_publishing import approved

    people["liaison"] = factories.staff("li1", "liaison", unit=people["liaison"].unit)
    people["reviewer"] = factories.staff("rv1", "reviewer")
    daily = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    article = approved(people, "渣土车夜查", daily.id)
    editor = _as(browser, live_server, "editor")
    editor.goto("/admin/articles/pushes/new")  # the 组推送并排期 tab: nothing prefilled
    assert editor.locator("select[name=column_id] option:checked").inner_text().startswith("无")
    editor.check("label:has-text('渣土车夜查') input")
    # Left at 无, the push filled no slot: the calendar kept saying 缺稿 and the units were asked for that day.
    assert editor.input_value("select[name=column_id]") == str(daily.id)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).astimezone(columns.LOCAL_TZ).strftime("%Y-%m-%dT08:00")
    editor.fill("input[name=scheduled_at]", tomorrow)
    editor.click("button:has-text('排期')")
    editor.wait_for_selector(".flash.success:has-text('已排期')")
    assert db.session.get(Article, article.id, populate_existing=True).push.column_id == daily.id
