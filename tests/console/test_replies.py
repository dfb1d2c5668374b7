"""The auto-reply editor: rules through the console pages, the test box, welcome/default, audit, and roles."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from models import AuditLog, ReplyRule
from server.extensions import db
from server.services import replies
from tests import factories


def _rule_form(**overrides: str) -> dict:
    form = {
        "name": "开放日",
        "match_type": "contains",
        "pattern": "开放日",
        "priority": "0",
        "enabled": "on",
        "reply_type": "text",
        "reply_text": "开放日每月第一个周六，回复「报名」了解详情",
    }
    form.update(overrides)
    return form


def _rule(name: str) -> ReplyRule:
    return db.session.scalars(sa.select(ReplyRule).filter_by(name=name)).one()


def _audits(action: str) -> list[AuditLog]:
    return list(db.session.scalars(sa.select(AuditLog).filter_by(action=action).order_by(AuditLog.id)))


def _test_result(console, msg: str, kind: str = "text") -> str:
    html = console.get("/admin/replies", query_string={"msg": msg, "kind": kind}).get_data(as_text=True)
    found = re.search(r'<div id="test-result">(.*?)</div>', html, re.S)
    assert found, "no test result on the page"
    return found.group(1)


@pytest.fixture
def as_editor(console, db_session):
    factories.staff("editor1", "editor", name="编辑甲")
    assert console.login("editor1").status_code == 302
    return console


def test_empty_list_says_what_to_do(as_editor):
    html = as_editor.get("/admin/replies").get_data(as_text=True)
    assert "还没有回复规则" in html and "新增规则" in html


def test_a_rule_made_in_the_console_answers_on_wechat_at_once(as_editor, wechat):
    assert wechat.text("o-fan1", "开放日怎么参加") is None  # nothing configured yet
    res = as_editor.post("/admin/replies/new", _rule_form())
    assert res.status_code == 302
    assert wechat.text("o-fan1", "开放日怎么参加")["Content"].startswith("开放日每月第一个周六")
    listed = as_editor.get("/admin/replies").get_data(as_text=True)
    assert "开放日" in listed and "包含" in listed
    [entry] = _audits("rule.create")
    assert entry.staff_name == "编辑甲" and entry.before is None and entry.after["pattern"] == "开放日"


def test_editing_a_rule_changes_the_reply_and_is_audited(as_editor, wechat):
    as_editor.post("/admin/replies/new", _rule_form())
    rule = _rule("开放日")
    form_html = as_editor.get(f"/admin/replies/{rule.id}").get_data(as_text=True)
    assert "开放日每月第一个周六" in form_html  # the form is filled with the rule
    res = as_editor.post(f"/admin/replies/{rule.id}", _rule_form(reply_text="开放日改为每月第二个周六", priority="5"))
    assert res.status_code == 302
    assert wechat.text("o-fan1", "开放日")["Content"] == "开放日改为每月第二个周六"
    [entry] = _audits("rule.update")
    assert entry.before["reply_text"].startswith("开放日每月第一个周六") and entry.before["priority"] == 0
    assert entry.after["reply_text"] == "开放日改为每月第二个周六" and entry.after["priority"] == 5


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"pattern": ""}, "关键词不能为空"),
        ({"match_type": "regex", "pattern": "(未闭合"}, "正则表达式有误"),
        ({"reply_text": "  "}, "文本回复的内容不能为空"),
        ({"reply_text": "字" * 700}, "2048 字节"),
        ({"priority": "高"}, "优先级须为整数"),
        ({"priority": "99999999999"}, "优先级须为 0 到 9999"),
        ({"reply_type": "image"}, "media_id"),
        ({"reply_type": "news"}, "1 到 8 篇"),
        ({"match_type": "fuzzy"}, "匹配方式"),
    ],
)
def test_invalid_rules_are_shown_again_with_a_chinese_message(as_editor, overrides, message):
    res = as_editor.post("/admin/replies/new", _rule_form(**overrides))
    html = res.get_data(as_text=True)
    assert res.status_code == 400 and message in html
    assert 'name="pattern"' in html  # the form again, with what was typed
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReplyRule)) == 0


def test_news_rule_with_articles_and_its_checks(as_editor, wechat):
    articles = {
        "article_title": ["开放日报名", "", "往期回顾"],
        "article_description": ["每月一次", "", ""],
        "article_image": ["https://example.org/a.jpg", "", ""],
        "article_url": ["https://example.org/a", "", "javascript:alert(1)"],
    }
    bad = as_editor.post("/admin/replies/new", _rule_form(reply_type="news", pattern="图文") | articles)
    assert bad.status_code == 400 and "第 2 篇文章的链接" in bad.get_data(as_text=True)  # blank row skipped
    articles["article_url"][2] = "https://example.org/b"
    # WeChat answers a citizen's text message with one article at most (since 2018): two would not reach them.
    many = as_editor.post("/admin/replies/new", _rule_form(reply_type="news", pattern="图文", name="图文") | articles)
    assert many.status_code == 400 and "只能回复 1 篇图文" in many.get_data(as_text=True)
    assert 'value="往期回顾"' in many.get_data(as_text=True)  # the articles typed are still there
    one = {field: cells[:1] for field, cells in articles.items()}
    ok = as_editor.post("/admin/replies/new", _rule_form(reply_type="news", pattern="图文", name="图文") | one)
    assert ok.status_code == 302
    rule = _rule("图文")
    assert [a["title"] for a in rule.articles] == ["开放日报名"] and rule.reply_text is None
    news = wechat.text("o-fan1", "图文")
    assert news["MsgType"] == "news" and news["ArticleCount"] == "1"
    # A menu click is an event: WeChat takes up to 8 articles in answer to it.
    click = _rule_form(reply_type="news", match_type="click", pattern="NEWS_KEY", name="点击图文") | articles
    assert as_editor.post("/admin/replies/new", click).status_code == 302
    assert wechat.event("o-fan1", "CLICK", "NEWS_KEY")["ArticleCount"] == "2"


def test_a_double_submit_makes_one_rule(as_editor):
    assert as_editor.post("/admin/replies/new", _rule_form()).status_code == 302
    again = as_editor.post("/admin/replies/new", _rule_form())
    assert again.status_code == 400 and "重复提交" in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReplyRule)) == 1


def test_a_rule_that_another_rule_always_answers_first_is_flagged(as_editor, wechat):
    as_editor.post("/admin/replies/new", _rule_form(name="垃圾", pattern="垃圾", reply_text="垃圾", priority="5"))
    res = as_editor.post(
        "/admin/replies/new",
        _rule_form(name="分类", pattern="垃圾分类", reply_text="分类"),
        follow_redirects=True,
    )
    html = res.get_data(as_text=True)
    assert "这条规则不会被触发" in html and "规则「垃圾」" in html and "优先级 5" in html
    assert wechat.text("o-fan1", "垃圾分类")["Content"] == "垃圾"  # the warning is what WeChat does
    row = re.search(r"<tr>\s*<td>分类</td>.*?</tr>", html, re.S)
    assert row and "不会触发" in row.group(0) and "规则「垃圾」（优先级 5）先回复同样的消息" in row.group(0)
    # A new rule that takes over another's messages says which one it silences.
    res = as_editor.post(
        "/admin/replies/new",
        _rule_form(name="垃圾桶", match_type="contains", pattern="垃", reply_text="桶", priority="9"),
        follow_redirects=True,
    )
    assert "规则 「垃圾」、「分类」 不会再被触发" in res.get_data(as_text=True)


def test_disable_enable_and_delete(as_editor, wechat):
    as_editor.post("/admin/replies/new", _rule_form())
    rule = _rule("开放日")
    as_editor.post(f"/admin/replies/{rule.id}/enabled", {"enabled": "0"})
    as_editor.post(f"/admin/replies/{rule.id}/enabled", {"enabled": "0"})  # a double click: still disabled
    assert wechat.text("o-fan1", "开放日") is None
    assert [e.after for e in _audits("rule.disable")] == [{"enabled": False}]
    as_editor.post(f"/admin/replies/{rule.id}/enabled", {"enabled": "1"})
    assert wechat.text("o-fan1", "开放日", create_time=int(time.time()) - 5) is not None
    assert as_editor.post(f"/admin/replies/{rule.id}/delete").status_code == 302
    assert db.session.get(ReplyRule, rule.id) is None
    assert _audits("rule.delete")[0].before["pattern"] == "开放日"
    assert wechat.text("o-fan1", "开放日", create_time=int(time.time()) - 10) is None
    assert as_editor.post(f"/admin/replies/{rule.id}/delete").status_code == 404


def test_the_test_box_picks_the_rule_the_gateway_would(as_editor, wechat):
    as_editor.post("/admin/replies/new", _rule_form(name="低", pattern="城管", reply_text="低优先级", priority="1"))
    as_editor.post("/admin/replies/new", _rule_form(name="高", pattern="城管执法", reply_text="高优先级", priority="9"))
    result = _test_result(as_editor, "城管执法局电话")
    assert "<strong>高</strong>" in result and "优先级 9" in result and "高优先级" in result
    assert wechat.text("o-fan1", "城管执法局电话")["Content"] == "高优先级"
    # The higher rule disabled: the test box and WeChat both fall to the lower one.
    as_editor.post(f"/admin/replies/{_rule('高').id}/enabled", {"enabled": "0"})
    result = _test_result(as_editor, "城管执法局电话")
    assert "<strong>低</strong>" in result and "低优先级" in result
    assert wechat.text("o-fan1", "城管执法局电话", create_time=int(time.time()) - 5)["Content"] == "低优先级"


def test_the_test_box_shows_the_default_reply_or_silence(as_editor):
    assert "不会回复" in _test_result(as_editor, "随便说点什么")
    as_editor.post("/admin/replies/settings", {"welcome_message": "欢迎！", "default_reply": "收到，稍后回复您"})
    result = _test_result(as_editor, "随便说点什么")
    assert "默认回复" in result and "收到，稍后回复您" in result


def test_the_test_box_for_menu_clicks(as_editor):
    as_editor.post("/admin/replies/new", _rule_form(name="联系我们", match_type="click", pattern="CONTACT"))
    assert "<strong>联系我们</strong>" in _test_result(as_editor, "CONTACT", kind="click")
    assert "<strong>联系我们</strong>" not in _test_result(as_editor, "CONTACT")  # a click rule never answers text
    # A click the system answers itself: no rule may claim it, and the test box says who answers.
    res = as_editor.post("/admin/replies/new", _rule_form(name="活动", match_type="click", pattern="EVENTS_LIST"))
    assert res.status_code == 400 and "由系统自动回复" in res.get_data(as_text=True)
    assert "由<strong>系统自动回复</strong>" in _test_result(as_editor, "EVENTS_LIST", kind="click")


def test_welcome_and_default_reply_edits_are_seen_by_wechat(as_editor, wechat):
    assert wechat.event("o-new", "subscribe")["Content"] == replies.DEFAULT_WELCOME
    assert replies.DEFAULT_WELCOME in as_editor.get("/admin/replies").get_data(as_text=True)
    res = as_editor.post(
        "/admin/replies/settings", {"welcome_message": "欢迎关注市城管局！", "default_reply": "您的留言已收到"}
    )
    assert res.status_code == 302
    now = int(time.time())
    assert wechat.event("o-new2", "subscribe", create_time=now - 3)["Content"] == "欢迎关注市城管局！"
    assert wechat.text("o-new2", "你好")["Content"] == "您的留言已收到"
    entries = {e.target_id: e for e in _audits("reply_setting.update")}
    assert entries["welcome_message"].before == {"value": None}
    assert entries["welcome_message"].after == {"value": "欢迎关注市城管局！"}
    assert entries["default_reply"].after == {"value": "您的留言已收到"}
    # An empty welcome means none is sent.
    as_editor.post("/admin/replies/settings", {"welcome_message": "", "default_reply": "您的留言已收到"})
    assert wechat.event("o-new3", "subscribe", create_time=now - 6) is None


def test_settings_are_saved_together_or_not_at_all(as_editor):
    res = as_editor.post("/admin/replies/settings", {"welcome_message": "新欢迎语", "default_reply": "字" * 700})
    assert res.status_code == 400 and "默认回复不能超过 2048 字节" in res.get_data(as_text=True)
    assert replies.text_settings()["welcome_message"] == replies.DEFAULT_WELCOME
    assert _audits("reply_setting.update") == []


@pytest.mark.parametrize("role", ["reviewer", "liaison", "officer"])
def test_only_admins_and_editors_manage_replies(console, db_session, role):
    rule = factories.rule("你好", "hi")
    factories.staff("someone", role, unit=factories.unit() if role in ("liaison", "officer") else None)
    console.login("someone")
    assert console.get("/admin/replies").status_code == 403
    assert console.get(f"/admin/replies/{rule.id}").status_code == 403
    assert console.post("/admin/replies/new", _rule_form()).status_code == 403
    assert console.post(f"/admin/replies/{rule.id}/delete").status_code == 403
    assert console.post("/admin/replies/settings", {"welcome_message": "x", "default_reply": "y"}).status_code == 403
    assert db.session.get(ReplyRule, rule.id) is not None


def test_admin_can_manage_replies_too(as_admin):
    assert as_admin.get("/admin/replies").status_code == 200
    assert as_admin.post("/admin/replies/new", _rule_form()).status_code == 302
