from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import ArticlePush, PushStatus
from server.extensions import db
from server.services import articles, columns, publishing
from server.wechat import client as client_module
from tests import factories
from tests.services.test_publishing import SUBMIT, WorkerKilled, _dying, approved, calls_to, jpeg, last_publish_event


def test_calendar_and_pages_render_for_an_editor(console, db_session):
    factories.staff("ed1", "editor")
    assert console.login("ed1").status_code == 302
    res = console.get("/admin/articles")
    assert res.status_code == 200 and "每日一案" in res.get_data(as_text=True)
    assert "缺稿" in res.get_data(as_text=True)
    assert console.get("/admin/articles?view=week").status_code == 200
    columns_page = console.get("/admin/articles/columns").get_data(as_text=True)
    assert "本月准时率" in columns_page and "按月查看栏目和单位数据" in columns_page
    assert console.get("/admin/articles/new").status_code == 200
    res = console.post("/admin/articles/new", {"title": "标题", "body_html": "<p onclick='x()'>正文</p>"})
    assert res.status_code == 302
    detail = console.get(res.headers["Location"]).get_data(as_text=True)
    assert "正文" in detail and "onclick" not in detail


def test_liaison_cannot_approve_or_schedule(console, db_session):
    unit = factories.unit("浦东分局")
    factories.staff("li1", "liaison", unit=unit)
    assert console.login("li1").status_code == 302
    assert console.get("/admin/articles/pushes/new").status_code == 403
    assert console.get("/admin/articles/columns").status_code == 403
    res = console.post("/admin/articles/new", {"title": "标题", "body_html": "<p>正文</p>"})
    article_url = res.headers["Location"]
    console.post(article_url + "/approve", {"comment": ""})
    assert "已通过" not in console.get(article_url).get_data(as_text=True).split("状态：")[1][:40]


def test_a_liaison_cannot_read_another_units_scheduled_titles(console, db_session):
    people = factories.newsroom()  # li1 of 浦东分局
    other = factories.staff("li2", "liaison", unit=factories.unit("杨浦分局"))
    theirs = articles.save_article(other, title="乙分局稿件", body_html="<p>正文</p>", author="城管", cover=jpeg())
    articles.submit(other, theirs.id)
    articles.review(people["reviewer"], theirs.id, approve=True)
    push = articles.schedule_push(people["editor"], [theirs.id], datetime.now(UTC) + timedelta(days=1), None)
    assert console.login("li1").status_code == 302
    res = console.get(f"/admin/articles/pushes/{push.id}")
    assert res.status_code == 403 and "乙分局稿件" not in res.get_data(as_text=True)


def test_the_article_list_pages_through_every_article_newest_first(console, db_session, monkeypatch):
    from server.console import articles as article_views

    monkeypatch.setattr(article_views, "ARTICLES_PER_PAGE", 2)
    people = factories.newsroom()
    for title in ("第一篇", "第二篇", "第三篇"):
        articles.save_article(people["editor"], title=title, body_html="<p>正文</p>", author="城管")
    assert console.login("ed1").status_code == 302
    first = console.get("/admin/articles/list").get_data(as_text=True)
    assert "第三篇" in first and "第二篇" in first and "第一篇" not in first and "第 1 / 2 页" in first
    last = console.get("/admin/articles/list?page=2").get_data(as_text=True)
    assert "第一篇" in last and "第三篇" not in last and "← 上一页" in last


RED = 'style="color:#b91c1c"'


def test_failures_are_red_and_an_uncertain_push_offers_its_two_ways_out(console, emulator, wechat, monkeypatch):
    people = factories.newsroom()
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(second=0, microsecond=0)  # pushes keep minutes
    titles = ("审核不过", "没有权限", "结果不明")
    rejected, refused, unknown = (
        articles.schedule_push(
            people["editor"], [approved(people, t, column.id).id], start + timedelta(minutes=i), column.id
        )
        for i, t in enumerate(titles)
    )
    emulator.hook("publish-outcome", {"publish_status": 4, "fail_idx": [1]})
    publishing.run_due(start + timedelta(seconds=30))
    assert wechat.post(last_publish_event(emulator)["xml"]).status_code == 200  # PUBLISHJOBFINISH: rejected
    emulator.hook("fail", {"path": SUBMIT, "errcode": 48001})
    publishing.run_due(start + timedelta(minutes=1, seconds=30))
    real = client_module.SharedTokenClient.raw_post
    # The worker dies around the submit (here: before it left, which nobody can tell from the database).
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", _dying(real, SUBMIT, after_sending=False))
    with pytest.raises(WorkerKilled):
        publishing.run_due(start + timedelta(minutes=2, seconds=30))
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    publishing.run_due(start + timedelta(minutes=10))  # the lease is over: it stops for a person
    db.session.expire_all()
    statuses = [db.session.get(ArticlePush, p.id).status for p in (rejected, refused, unknown)]
    assert statuses == [PushStatus.FAILED, PushStatus.FAILED, PushStatus.UNCERTAIN]

    assert console.login("ed1").status_code == 302
    calendar = console.get(f"/admin/articles?d={columns.local_day(start).isoformat()}").get_data(as_text=True)
    banners = re.findall(r'<div class="flash error push-alarm" style="color:#b91c1c[^>]*>(.*?)</div>', calendar, re.S)
    assert len(banners) == 3
    assert "发布状态不明" in banners[0] and "发布状态不明，请在公众平台核对后标记" in banners[0]
    assert "发布失败" in banners[1] and "公众号没有发布接口权限（48001）" in banners[1]
    assert "发布失败" in banners[2] and "平台审核不通过" in banners[2]
    assert calendar.count(f'class="push push-failed" {RED}') == 2
    assert calendar.count(f'class="push push-uncertain" {RED}') == 1

    detail = console.get(f"/admin/articles/{rejected.articles[0].id}").get_data(as_text=True)
    assert f'<strong class="article-status" {RED}>发布失败</strong>' in detail and "平台审核不通过" in detail
    listing = console.get("/admin/articles/list").get_data(as_text=True)
    assert listing.count(f"<td {RED}>发布失败</td>") == 2 and listing.count(f"<td {RED}>发布状态不明</td>") == 1

    page = console.get(f"/admin/articles/pushes/{unknown.id}").get_data(as_text=True)
    assert f'<strong class="push-status" {RED}>状态不明</strong>' in page
    assert "发布状态不明，请在公众平台核对后标记" in page
    assert 'id="mark-published"' in page and 'id="retry-submit"' in page
    # Retrying needs the person to say they checked; then it goes out again, once.
    console.post(f"/admin/articles/pushes/{unknown.id}/retry", {})
    assert "请先在公众平台核对" in console.get(f"/admin/articles/pushes/{unknown.id}").get_data(as_text=True)
    assert db.session.get(ArticlePush, unknown.id, populate_existing=True).status is PushStatus.UNCERTAIN
    console.post(f"/admin/articles/pushes/{unknown.id}/retry", {"checked": "1"})
    assert db.session.get(ArticlePush, unknown.id, populate_existing=True).status is PushStatus.SCHEDULED
    publishing.run_due(start + timedelta(minutes=11))
    assert db.session.get(ArticlePush, unknown.id, populate_existing=True).status is PushStatus.SUBMITTED
    assert len(calls_to(emulator, SUBMIT)) == 3  # rejected, refused, the deliberate retry

    # 48001: published by hand from the exported HTML, then marked with its link.
    console.post(f"/admin/articles/pushes/{refused.id}/manual", {"urls": "https://mp.weixin.qq.com/s/abc"})
    page = console.get(f"/admin/articles/pushes/{refused.id}").get_data(as_text=True)
    assert '<strong class="push-status" >已发布</strong>' in page and "https://mp.weixin.qq.com/s/abc" in page


def test_column_numbers_show_the_on_time_rate(console, emulator):
    people = factories.newsroom()
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    day = columns.local_day(datetime.now(UTC)) + timedelta(days=1)
    push = articles.schedule_push(
        people["editor"], [approved(people, "准时", column.id).id], columns.slot_at(column, day), column.id
    )
    publishing.run_due(push.scheduled_at)
    publishing.poll_submitted(push.scheduled_at + timedelta(minutes=1), after=timedelta())
    assert console.login("rv1").status_code == 302  # leaders and reviewers read the numbers too
    html = console.get(f"/admin/articles/numbers?month={day.strftime('%Y-%m')}").get_data(as_text=True)
    row = html.split('<tr data-column="每日一案">')[1].split("</tr>")[0]
    assert '<td class="num">1</td>' in row  # one published
    rate = columns.column_stats(day.year, day.month)["on_time"][column.id]["rate"]  # its slot is not yet due
    assert f'<td class="num rate">{"—" if rate is None else f"{rate * 100:.1f} %"}</td>' in row
    submitted = 1 if columns.local_day(datetime.now(UTC)).month == day.month else 0  # submitted today
    unit_row = html.split('<tr data-unit="浦东分局">')[1].split("</tr>")[0]
    assert unit_row == f'<td>浦东分局</td><td class="num">{submitted}</td><td class="num">1</td>'


def test_a_push_keeps_the_order_the_articles_were_ticked_in(console, emulator):
    people = factories.newsroom()
    first, second = approved(people, "先写的"), approved(people, "后写的")
    assert console.login("ed1").status_code == 302
    at = (datetime.now(UTC) + timedelta(days=1)).astimezone(columns.LOCAL_TZ).strftime("%Y-%m-%dT%H:%M")
    form = {"scheduled_at": at, "article_id": [str(first.id), str(second.id)], "order": f"{second.id},{first.id}"}
    res = console.post("/admin/articles/pushes/new", form)
    assert res.status_code == 302
    push = db.session.scalars(sa.select(ArticlePush)).one()
    assert [a.title for a in push.articles] == ["后写的", "先写的"]  # the second one ticked first is the headline


def test_cancelling_a_schedule_asks_first(console, emulator):
    people = factories.newsroom()
    at = datetime.now(UTC) + timedelta(days=1)
    push = articles.schedule_push(people["editor"], [approved(people, "待发的").id], at, None)
    assert console.login("ed1").status_code == 302
    page = console.get(f"/admin/articles/pushes/{push.id}").get_data(as_text=True)
    form = page.split(f'action="/admin/articles/pushes/{push.id}/cancel"')[1].split(">")[0]
    assert "return confirm('取消这次排期？" in form  # as every other destructive button does


def test_article_media_serves_only_the_articles_folder(console, db_session):
    from server.services import images

    factories.staff("li1", "liaison", unit=factories.unit("浦东分局"))
    body = images.write_media("articles/body/abc.jpg", jpeg())
    images.write_media("originals/a0/secret.jpg", jpeg())  # a tip's original, with its GPS: not for every role
    assert body.is_file() and console.login("li1").status_code == 302
    res = console.get("/admin/articles/media/articles/body/abc.jpg")
    assert res.status_code == 200 and res.get_data() == body.read_bytes()
    res.close()
    for sneaky in ("articles/%2e%2e/originals/a0/secret.jpg", "articles/../originals/a0/secret.jpg"):
        assert console.get(f"/admin/articles/media/{sneaky}").status_code == 404


def test_a_refused_save_shows_the_body_cleaned(console, db_session):
    factories.staff("ed1", "editor")
    assert console.login("ed1").status_code == 302
    res = console.post("/admin/articles/new", {"title": "", "body_html": "<p>正文<img src=x onerror=alert(1)></p>"})
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "正文" in page and "onerror" not in page


def test_the_push_form_names_each_columns_day_and_time(console, db_session):
    factories.staff("ed1", "editor")
    columns.ensure_default_columns()
    assert console.login("ed1").status_code == 302
    page = console.get("/admin/articles/pushes/new").get_data(as_text=True)
    assert "每日一案（每天 " in page and re.search(r"强转树（每周[一二三四五六日] \d\d:\d\d）", page)


def test_review_actions_say_what_happened_and_a_returned_draft_says_so(console, db_session):
    people = factories.newsroom()  # li1, rv1 and ed1
    a = articles.save_article(people["liaison"], title="占道经营", body_html="<p>正文</p>")
    assert console.login("li1").status_code == 302
    res = console.post(f"/admin/articles/{a.id}/submit", follow_redirects=True)
    assert "已提交审核，审核人员会在「待审核」中看到" in res.get_data(as_text=True)
    console.post("/admin/logout")
    assert console.login("rv1").status_code == 302
    res = console.post(f"/admin/articles/{a.id}/reject", {"comment": "补充法条"}, follow_redirects=True)
    page = res.get_data(as_text=True)
    assert "已退回修改" in page and "退回修改" in page.split("状态：")[1][:80]
    assert "退回修改" in console.get("/admin/articles/list").get_data(as_text=True)


def test_the_calendar_reminds_of_each_of_the_next_three_days(console, db_session):
    factories.staff("ed1", "editor")
    columns.ensure_default_columns()
    assert console.login("ed1").status_code == 302
    page = console.get("/admin/articles").get_data(as_text=True)
    days = re.findall(r"提醒：\S+「每日一案」还没有排期（(\d) 天后）", page)
    assert days == ["1", "2", "3"]


def test_a_refused_column_form_shows_what_was_typed_again(console, db_session):
    from tests import factories

    factories.staff("admin9", "admin")
    console.login("admin9")
    form = {"name": "每周一法", "cadence": "weekly", "weekday": "²", "publish_time": "09:30"}
    form["header_html"] = "<p>页眉</p>"
    res = console.post("/admin/articles/columns/new", form)
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "周一到周日" in page
    assert 'value="每周一法"' in page and 'value="09:30"' in page and "&lt;p&gt;页眉&lt;/p&gt;" in page
    assert '<option value="weekly" selected>' in page


def test_a_failed_push_given_back_leads_to_the_push_form_with_its_articles_ticked(console, emulator):
    people = factories.newsroom()
    column = next(c for c in columns.ensure_default_columns() if c.name == "强转树")
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(second=0, microsecond=0)
    first, second = approved(people, "头条稿", column.id), approved(people, "次条稿", column.id)
    push = articles.schedule_push(people["editor"], [second.id, first.id], start, column.id)
    emulator.hook("fail", {"path": SUBMIT, "errcode": 45009})
    publishing.run_due(start + timedelta(seconds=30))
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.FAILED
    assert console.login("ed1").status_code == 302
    page = console.get(f"/admin/articles/pushes/{push.id}").get_data(as_text=True)
    assert ">重新排期</button>" in page

    res = console.post(f"/admin/articles/pushes/{push.id}/release", {})
    assert res.status_code == 302 and "/admin/articles/pushes/new?" in res.headers["Location"]
    form = console.get(res.headers["Location"]).get_data(as_text=True)
    assert "请选择新的发布时间重新排期" in form
    assert f'<option value="{column.id}" selected>' in form
    for article in (first, second):
        assert f'name="article_id" value="{article.id}" checked>' in form
    assert f'id="pick-order" value="{second.id},{first.id}"' in form  # the headline stays the headline


def test_the_calendar_marks_today(console, db_session):
    factories.newsroom()
    assert console.login("ed1").status_code == 302
    page = console.get("/admin/articles").get_data(as_text=True)
    assert page.count('<td class="today"') == 1  # console.css shades it: otherwise no cell says which day it is


def test_a_past_days_gap_is_history_not_a_missing_article(console, db_session):
    factories.newsroom()
    columns.ensure_default_columns()  # 每日一案 has a slot every day and nothing is planned
    assert console.login("ed1").status_code == 302
    today = columns.local_day(datetime.now(UTC))  # Beijing: UTC's date is still yesterday before 08:00 there
    cells = {}
    for day in (today - timedelta(days=1), today + timedelta(days=1)):
        page = console.get(f"/admin/articles?view=week&d={day.isoformat()}").get_data(as_text=True)
        cells[day] = page.split(f"<small>{day.month}/{day.day}</small>")[1].split("</td>")[0]
    yesterday, tomorrow = cells[today - timedelta(days=1)], cells[today + timedelta(days=1)]
    # Before: yesterday said 缺稿 too, though nothing can be scheduled for it any more.
    assert "缺稿" not in yesterday and "未发布：每日一案" in yesterday
    assert "缺稿：" in tomorrow and "每日一案" in tomorrow


def _selected(page: str, name: str) -> list[str]:
    """The values of the selected options of one <select> on the page."""
    select = page.split(f'name="{name}"')[1].split("</select>")[0]
    return re.findall(r'<option value="(\d*)"[^>]*\bselected\b', select)


def test_a_refused_save_keeps_the_unit_and_column_that_were_chosen(console, db_session):
    editor = factories.staff("ed1", "editor")
    pudong, huangpu = factories.unit("浦东分局"), factories.unit("黄浦分局")
    daily, trees = (next(c for c in columns.ensure_default_columns() if c.name == n) for n in ("每日一案", "强转树"))
    assert console.login("ed1").status_code == 302
    form = {"title": "强拆后种树", "column_id": str(trees.id), "unit_id": str(pudong.id), "body_html": ""}
    res = console.post("/admin/articles/new", form)
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "正文不能为空" in page
    # Saved again as shown, the article would count for no unit (投稿 per unit) without anyone noticing.
    assert _selected(page, "unit_id") == [str(pudong.id)] and _selected(page, "column_id") == [str(trees.id)]

    # Editing: what was chosen comes back, not the saved values beside it.
    article = articles.save_article(
        editor, title="原稿", body_html="<p>正文</p>", column_id=daily.id, unit_id=huangpu.id
    )
    form["title"] = "原稿"
    res = console.post(f"/admin/articles/{article.id}/edit", form)
    page = res.get_data(as_text=True)
    assert res.status_code == 400
    assert _selected(page, "unit_id") == [str(pudong.id)] and _selected(page, "column_id") == [str(trees.id)]


def test_a_double_click_on_schedule_makes_one_push_and_says_so(console, emulator):
    people = factories.newsroom()
    article = approved(people, "每日一案稿")
    assert console.login("ed1").status_code == 302
    page = console.get("/admin/articles/pushes/new").get_data(as_text=True)
    key = re.search(r'name="submit_key" value="([^"]+)"', page)
    assert key, "the push form carries no submit key"
    at = (datetime.now(UTC) + timedelta(days=1)).astimezone(columns.LOCAL_TZ).strftime("%Y-%m-%dT%H:%M")
    form = {"scheduled_at": at, "article_id": str(article.id), "order": str(article.id), "submit_key": key.group(1)}
    first = console.post("/admin/articles/pushes/new", form)
    assert first.status_code == 302
    # The browser shows the second click's answer: it said 《…》尚未审核通过，不能排期 for a push that was made.
    second = console.post("/admin/articles/pushes/new", form)
    assert second.status_code == 302 and second.headers["Location"] == first.headers["Location"]
    assert len(db.session.scalars(sa.select(ArticlePush)).all()) == 1
    assert "重复的提交只保存了一次" in console.get(second.headers["Location"]).get_data(as_text=True)


def test_editing_a_scheduled_article_says_it_leaves_its_push(console, emulator):
    people = factories.newsroom()
    article = approved(people, "明早的每日一案")
    at = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    articles.schedule_push(people["editor"], [article.id], at, None)
    when = at.astimezone(columns.LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    assert console.login("ed1").status_code == 302
    # Before: only 需要重新提交审核, so an editor fixing a typo did not expect the slot to empty.
    page = console.get(f"/admin/articles/{article.id}/edit").get_data(as_text=True)
    assert f"已排期在 {when} 发布" in page and "撤出这次推送" in page
    form = {"title": article.title, "body_html": article.body_html, "digest": "改了摘要"}
    res = console.post(f"/admin/articles/{article.id}/edit", form, follow_redirects=True)
    page = res.get_data(as_text=True)
    assert f"已撤出 {when} 的推送" in page and "重新排期" in page


def test_cancelling_a_push_to_move_it_leads_to_the_push_form_with_its_articles_ticked(console, emulator):
    people = factories.newsroom()
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    first, second = approved(people, "头条稿", column.id), approved(people, "次条稿", column.id)
    at = datetime.now(UTC) + timedelta(days=1)
    push = articles.schedule_push(people["editor"], [second.id, first.id], at, column.id)
    assert console.login("ed1").status_code == 302
    res = console.post(f"/admin/articles/pushes/{push.id}/cancel", {})
    # Before: back on the push page, which no longer listed its articles (they left it) and said nothing, so moving
    # a push to another time meant remembering which articles, in which order, and ticking them again.
    assert res.status_code == 302 and "/admin/articles/pushes/new?" in res.headers["Location"]
    form = console.get(res.headers["Location"]).get_data(as_text=True)
    assert "已取消排期" in form
    assert f'<option value="{column.id}" selected>' in form
    for article in (first, second):
        assert f'name="article_id" value="{article.id}" checked>' in form
    assert f'id="pick-order" value="{second.id},{first.id}"' in form


def test_a_push_with_no_articles_left_offers_no_empty_export(console, emulator):
    people = factories.newsroom()
    push = articles.schedule_push(
        people["editor"], [approved(people, "要取消的稿").id], datetime.now(UTC) + timedelta(days=1), None
    )
    assert console.login("ed1").status_code == 302
    page = console.get(f"/admin/articles/pushes/{push.id}").get_data(as_text=True)
    assert "导出微信 HTML" in page
    console.post(f"/admin/articles/pushes/{push.id}/cancel", {})
    db.session.expire_all()  # the test's requests share one session, which still holds the push's old article list
    # Before: the button stayed and downloaded an empty document (the articles had left the push).
    assert "导出微信 HTML" not in console.get(f"/admin/articles/pushes/{push.id}").get_data(as_text=True)
    res = console.get(f"/admin/articles/pushes/{push.id}/export.html", follow_redirects=True)
    assert res.mimetype == "text/html" and "已没有文章" in res.get_data(as_text=True)


def test_saving_a_title_too_long_for_the_columns_pattern_says_the_prefix_will_be_left_out(console, db_session):
    factories.newsroom()
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    assert console.login("ed1").status_code == 302
    form = {"title": "标" * 28, "body_html": "<p>案情</p>", "column_id": str(column.id)}
    page = console.post("/admin/articles/new", form, follow_redirects=True).get_data(as_text=True)
    # Before: the push went out as the bare title, and only 标题（≤32字） had been said.
    assert "套用栏目格式「每日一案｜{title}」后超过 32 字" in page
    form = {**form, "title": "标" * 27}  # 每日一案｜ + 27 = 32: fits
    page = console.post("/admin/articles/new", form, follow_redirects=True).get_data(as_text=True)
    assert "已保存" in page and "套用栏目格式" not in page


def test_todays_gap_after_its_time_offers_a_time_still_ahead(console, db_session):
    factories.staff("ed1", "editor")
    columns.save_column(name="零点栏目", cadence="daily", publish_time="00:00")
    assert console.login("ed1").status_code == 302
    page = html.unescape(console.get("/admin/articles").get_data(as_text=True))
    today_gap = r'<td class="today".*?缺稿：<a href="[^"]*scheduled_at=([^"&]+)[^"]*"[^>]*>零点栏目'
    [prefill] = re.findall(today_gap, page, re.S)
    # Before: today's 00:00, which the push form can only refuse as 发布时间须晚于现在.
    at = datetime.fromisoformat(prefill).replace(tzinfo=columns.LOCAL_TZ)
    now = datetime.now(UTC)
    assert now + timedelta(minutes=10) <= at <= now + timedelta(minutes=16) and at.minute % 5 == 0
    # Days ahead keep the column's own time, and the reminders lead to the push form too.
    assert re.search(r'提醒：\S+「零点栏目」还没有排期（1 天后）。<a href="[^"]+T00:00">去排期</a>', page)


def test_an_approved_articles_page_leads_an_editor_to_the_push_form_with_it_ticked(console, db_session):
    people = factories.newsroom()
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    article = approved(people, "占道经营整治", column.id)
    assert console.login("ed1").status_code == 302
    page = console.get(f"/admin/articles/{article.id}").get_data(as_text=True)
    link = re.search(r'id="schedule-article" href="([^"]+)"', page)
    assert link, "an approved article offers no way on to scheduling"
    form = console.get(html.unescape(link.group(1))).get_data(as_text=True)
    assert f'name="article_id" value="{article.id}" checked>' in form
    assert f'<option value="{column.id}" selected>' in form
    console.post("/admin/logout")
    assert console.login("li1").status_code == 302  # a liaison may not schedule: no button that ends in a 403
    assert 'id="schedule-article"' not in console.get(f"/admin/articles/{article.id}").get_data(as_text=True)


def test_the_push_list_shows_whats_coming_what_went_out_and_what_failed(console, db_session, monkeypatch):
    from server.console import articles as article_views

    people = factories.newsroom()
    other = factories.staff("li2", "liaison", unit=factories.unit("杨浦分局"))
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    soon = datetime.now(UTC) + timedelta(days=1)

    def push(title: str, at: datetime, by=None, column_id=None) -> ArticlePush:
        writers = people if by is None else {"liaison": by, "reviewer": people["reviewer"]}
        article = approved(writers, title, column_id)
        made = articles.schedule_push(people["editor"], [article.id], soon, column_id)
        made.scheduled_at = at  # a slot in the past, as pushes that already ran have
        db.session.commit()
        return made

    sent = push("已发的稿", datetime(2026, 3, 2, 0, 30, tzinfo=UTC), column_id=column.id)
    publishing.mark_published_manually(people["editor"], sent.id, ["https://mp.weixin.qq.com/s/sent"])
    failed = push("失败的稿", datetime(2026, 3, 3, 0, 30, tzinfo=UTC))
    failed.status, failed.error_code, failed.error_message = PushStatus.FAILED, 48001, "公众号没有发布接口权限"
    unknown = push("不明的稿", datetime(2026, 3, 4, 0, 30, tzinfo=UTC))
    unknown.status, unknown.error_message = PushStatus.UNCERTAIN, "发布状态不明，请在公众平台核对后标记"
    db.session.commit()
    upcoming = push("待发的稿", soon, column_id=column.id)
    theirs = push("乙分局稿件", soon - timedelta(hours=1), by=other)

    assert console.login("ed1").status_code == 302
    page = console.get("/admin/articles/pushes").get_data(as_text=True)
    rows = re.findall(r'<tr class="push-row push-(\w+)">(.*?)</tr>', page, re.S)
    # Newest first, by the time slot; shown in Beijing time (00:30 UTC is 08:30).
    assert [s for s, _ in rows] == ["scheduled", "scheduled", "uncertain", "failed", "published"]
    assert "待发的稿" in rows[0][1] and "乙分局稿件" in rows[1][1]
    assert "2026-03-02 08:30" in rows[4][1] and "https://mp.weixin.qq.com/s/sent" in rows[4][1]
    assert f"<td {RED}>失败</td>" in rows[3][1] and "公众号没有发布接口权限（错误码 48001）" in rows[3][1]
    assert "处理：重新排期或手动发布" in rows[3][1] and f"/admin/articles/pushes/{failed.id}" in rows[3][1]
    assert "处理：核对后标记或重新提交" in rows[2][1] and "发布状态不明，请在公众平台核对后标记" in rows[2][1]
    assert "查看 / 取消排期" in rows[0][1]
    assert 'href="/admin/articles/pushes"' in page  # the publishing tabs lead here

    def titles(query: str) -> list[str]:
        page = console.get(f"/admin/articles/pushes?{query}").get_data(as_text=True)
        return re.findall(r'<a href="/admin/articles/\d+">(.*?)</a>', page)

    assert titles("status=attention") == ["不明的稿", "失败的稿"]
    assert titles("status=upcoming") == ["待发的稿", "乙分局稿件"]
    assert titles("status=published") == ["已发的稿"]
    assert titles(f"column_id={column.id}") == ["待发的稿", "已发的稿"]
    assert titles(f"status=scheduled&column_id={column.id}") == ["待发的稿"]

    monkeypatch.setattr(article_views, "PUSHES_PER_PAGE", 2)
    first, last = titles(""), titles("page=3")
    assert first == ["待发的稿", "乙分局稿件"] and last == ["已发的稿"]
    assert "第 1 / 3 页" in console.get("/admin/articles/pushes").get_data(as_text=True)
    monkeypatch.setattr(article_views, "PUSHES_PER_PAGE", 1)
    assert (
        f"column_id={column.id}"
        in console.get(f"/admin/articles/pushes?column_id={column.id}").get_data(as_text=True).split('class="pager"')[1]
    )  # the pager keeps the filters

    # A liaison sees every slot, as on the calendar, but not another unit's titles, and acts on none.
    monkeypatch.setattr(article_views, "PUSHES_PER_PAGE", 50)
    console.post("/admin/logout")
    assert console.login("li1").status_code == 302
    page = console.get("/admin/articles/pushes").get_data(as_text=True)
    assert "乙分局稿件" not in page and "其他单位的推文 1 篇" in page and "待发的稿" in page
    assert f"/admin/articles/pushes/{theirs.id}" not in page and f"/admin/articles/pushes/{upcoming.id}" in page
    assert "处理：" not in page and "取消排期" not in page


def test_the_phone_preview_shows_the_article_as_sent_with_its_character_count(console, db_session):
    people = factories.newsroom()
    column = columns.save_column(name="以案说法", header_html="<p>栏目页头</p>", footer_html="<p>栏目页尾</p>")
    body = "<p>夜市 占道的案情</p>\n<p>已整改</p>"
    article = articles.save_article(
        people["liaison"], title="夜市占道", body_html=body, column_id=column.id, author="城管", cover=jpeg()
    )
    articles.submit(people["liaison"], article.id)  # what a reviewer is asked to approve
    assert console.login("rv1").status_code == 302
    page = console.get(f"/admin/articles/{article.id}").get_data(as_text=True)
    assert f'href="/admin/articles/{article.id}/preview">手机预览</a>' in page
    res = console.get(f"/admin/articles/{article.id}/preview")
    assert res.status_code == 200
    preview = res.get_data(as_text=True)
    phone = preview.split('id="phone-preview"')[1]
    # The column's header and footer around the body, in the order publishing sends them.
    assert re.search(r"栏目页头.*夜市 占道的案情.*已整改.*栏目页尾", phone, re.S)
    assert ".phone-frame { width: 375px;" in preview
    assert '<strong id="char-count">10</strong> 字' in preview  # 夜市占道的案情 + 已整改; blanks not counted


def test_the_phone_preview_is_refused_to_whoever_cannot_read_the_article(console, db_session):
    people = factories.newsroom()
    article = approved(people, "夜市占道")
    factories.staff("li2", "liaison", unit=factories.unit("杨浦分局"))
    factories.staff("of1", "officer", unit=people["unit"])
    for login, code in (("li2", 403), ("of1", 403)):
        assert console.login(login).status_code == 302
        assert console.get(f"/admin/articles/{article.id}").status_code == code  # as the article page
        res = console.get(f"/admin/articles/{article.id}/preview")
        assert res.status_code == code and "夜市占道的案情" not in res.get_data(as_text=True)
        console.post("/admin/logout")
    assert console.login("li1").status_code == 302  # the article's own unit may
    assert console.get(f"/admin/articles/{article.id}/preview").status_code == 200
    assert console.get(f"/admin/articles/{article.id + 1000}/preview").status_code == 404
