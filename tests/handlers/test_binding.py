"""Binding through /wechat: SCAN and scan-to-subscribe of a bind_ QR, codes typed in chat, and the refusals;
an editor bound by code then hears of a failed push, one bound by QR of an alert on their duty."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import ArticlePush, Follower, PushStatus, Staff, utcnow
from server.extensions import db
from server.services import alerts, binding, publishing
from tests import factories
from tests.services.test_publishing import SUBMIT, week_of_daily_cases


@pytest.fixture
def officer(db_session):
    return factories.staff("zhangsan", "officer", unit=factories.unit("浦东分局"), name="张三")


@pytest.fixture
def code(officer, emulator):
    emulator.hook("users", {"openids": ["o-zhang", "o-other"]})
    return binding.issue(officer.id)


def _openid_of(staff: Staff) -> str | None:
    return db.session.get(Staff, staff.id, populate_existing=True).openid


def _tagged(emulator, openid: str) -> bool:
    state = emulator.state()
    tag = next(t["id"] for t in state["tags"] if t["name"] == "一线队员")
    return tag in next(u for u in state["users"] if u["openid"] == openid)["tagid_list"]


def test_scan_binds_and_replies_with_name_and_unit(wechat, officer, code, emulator):
    reply = wechat.event("o-zhang", "SCAN", f"bind_{code.token}")
    assert reply["Content"].startswith("绑定成功：张三（浦东分局）")
    assert _openid_of(officer) == "o-zhang"
    assert _tagged(emulator, "o-zhang")


def test_scan_to_subscribe_binds_and_is_not_a_marketing_scene(wechat, officer, code, emulator):
    reply = wechat.event("o-zhang", "subscribe", f"qrscene_bind_{code.token}")
    assert reply["Content"].startswith("绑定成功：张三（浦东分局）")
    assert _openid_of(officer) == "o-zhang"
    follower = db.session.scalars(sa.select(Follower).filter_by(openid="o-zhang")).one()
    assert follower.subscribed and follower.source_scene is None and follower.last_scene is None


def test_other_scenes_still_count_as_sources(wechat, db_session):
    wechat.event("o-fan", "SCAN", "open_day")
    assert db.session.scalars(sa.select(Follower).filter_by(openid="o-fan")).one().last_scene == "open_day"


def test_code_typed_in_chat_binds(wechat, officer, code, emulator):
    reply = wechat.text("o-zhang", f"绑定 {code.code}")
    assert reply["Content"].startswith("绑定成功：张三（浦东分局）")
    assert _openid_of(officer) == "o-zhang"
    assert _tagged(emulator, "o-zhang")


def test_a_second_scan_is_refused_or_acknowledged(wechat, officer, code):
    wechat.event("o-zhang", "SCAN", f"bind_{code.token}")
    assert "已被使用" in wechat.event("o-other", "SCAN", f"bind_{code.token}")["Content"]
    assert "已被使用" in wechat.text("o-other", code.code)["Content"]
    # a later scan (events de-duplicate on sender + CreateTime, so it must carry a later time)
    again = wechat.event("o-zhang", "SCAN", f"bind_{code.token}", create_time=int(time.time()) + 5)
    assert again["Content"].startswith("您已绑定：张三")
    assert _openid_of(officer) == "o-zhang"


def test_an_expired_code_says_so(wechat, officer, code):
    code.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert "已过期" in wechat.event("o-zhang", "SCAN", f"bind_{code.token}")["Content"]
    assert "已过期" in wechat.text("o-zhang", f"绑定 {code.code}")["Content"]
    assert _openid_of(officer) is None


def test_a_wechat_bound_to_another_account_is_refused(wechat, officer, code):
    li = factories.staff("lisi", "officer", unit=officer.unit, name="李四")
    wechat.event("o-zhang", "SCAN", f"bind_{binding.issue(li.id).token}")
    assert "已绑定其他人员账号" in wechat.event("o-zhang", "SCAN", f"bind_{code.token}")["Content"]
    assert _openid_of(officer) is None and _openid_of(li) == "o-zhang"


def test_guessing_in_chat_is_limited(wechat, officer, code):
    for x in "23":
        for y in "23456":
            assert "不正确" in wechat.text("o-guess", f"绑定 ABCDEF{x}{y}")["Content"]
    assert "次数过多" in wechat.text("o-guess", f"绑定 {code.code}")["Content"]
    assert _openid_of(officer) is None


def test_ordinary_text_still_gets_keyword_replies(wechat, db_session):
    factories.rule("开放日", "7·15 开放日报名即将开始")
    assert wechat.text("o-fan", "开放日")["Content"] == "7·15 开放日报名即将开始"
    factories.rule("ABCD2345", "keyword wins for unknown code-like text", match_type="exact")
    assert wechat.text("o-fan", "ABCD2345")["Content"] == "keyword wins for unknown code-like text"
    assert "8 位" in wechat.text("o-fan", "绑定 123456")["Content"]


def _tag_calls(emulator) -> list[dict]:
    return [c for c in emulator.state()["calls"] if c["path"].startswith("cgi-bin/tags/")]


def test_an_editor_binds_by_code_untagged_and_then_hears_of_a_failed_push(wechat, emulator, db_session):
    city = factories.unit("市局宣传处", "department")
    editor = factories.staff("zhou", "editor", name="周编辑", unit=city)
    people = {
        "editor": editor,
        "reviewer": factories.staff("rv1", "reviewer"),
        "liaison": factories.staff("li1", "liaison", unit=factories.unit("浦东分局")),
    }
    emulator.hook("users", {"users": [{"openid": "o-zhou", "subscribe": 1}]})
    code = binding.issue(editor.id)

    reply = wechat.text("o-zhou", f"绑定 {code.code}")["Content"]
    assert reply.startswith("绑定成功：周编辑（市局宣传处），编辑。")
    assert "值班提醒" in reply and "发布失败通知" in reply and "队员菜单" not in reply
    assert _openid_of(editor) == "o-zhou"
    assert _tag_calls(emulator) == []  # the officers' menu tag is neither created nor given
    assert next(u for u in emulator.state()["users"] if u["openid"] == "o-zhou")["tagid_list"] == []

    # A push of theirs fails for good (no publishing permission): the notice goes to the WeChat just bound.
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": SUBMIT, "errcode": 48001})
    publishing.run_due(start + timedelta(minutes=1))
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.FAILED
    (notice,) = emulator.state()["templates_sent"]
    assert notice["touser"] == "o-zhou"
    assert notice["data"]["thing1"]["value"] == "推文发布失败"
    assert notice["data"]["character_string5"]["value"] == f"P{push.id}"


def test_an_officer_is_told_about_photo_uploads(wechat, officer, code):
    reply = wechat.text("o-zhang", code.code)["Content"]
    assert "一线队员" in reply and "现场图片" in reply and "值班提醒" not in reply


@pytest.fixture
def alert_terms(db_session):
    alerts.seed_default_terms()
    alerts.terms_changed()
    yield
    alerts.terms_changed()  # the rolled-back terms must not stay in this process's automaton


def test_an_editor_bound_by_qr_hears_of_an_alert_on_duty(wechat, emulator, alert_terms):
    editor = factories.staff("zhou", "editor", name="周编辑")
    alerts.set_duty([editor.id])
    alerts.save_settings(threshold=5, sla_minutes=30, template_id="tmpl-alert")
    emulator.hook("users", {"openids": ["o-zhou", "o-fan"]})
    reply = wechat.event("o-zhou", "SCAN", binding.scene_of(binding.issue(editor.id)))["Content"]
    assert reply.startswith("绑定成功：周编辑") and "舆情值班提醒" in reply
    wechat.text("o-fan", "有人打人了，我已经叫了记者")
    assert [(t["touser"], t["template_id"]) for t in emulator.state()["templates_sent"]] == [("o-zhou", "tmpl-alert")]
    assert _tag_calls(emulator) == []
