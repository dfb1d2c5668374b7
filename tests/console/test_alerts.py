"""The alerts console: list with new/overdue highlighting, the poll feed, acknowledgement, terms, duty, roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Alert, AlertDuty, AlertStatus, AuditLog, SensitiveTerm, utcnow
from server.extensions import db
from server.services import alerts
from tests import factories


@pytest.fixture(autouse=True)
def terms(db_session):
    alerts.seed_default_terms()
    alerts.terms_changed()
    yield
    alerts.terms_changed()


def _raise(ref: str, text: str = "城管暴力执法") -> Alert:
    alert = alerts.scan_text("o-fan", text, source="message", ref=ref)
    assert alert is not None
    return alert


def test_list_highlights_new_and_overdue(as_admin):
    fresh = _raise("1")
    late = _raise("2", "有人打人")
    done = _raise("3", "殴打")
    late.created_at = utcnow() - timedelta(minutes=45)
    db.session.commit()
    alerts.acknowledge(done.id)
    res = as_admin.get("/admin/alerts")
    html = res.get_data(as_text=True)
    assert res.status_code == 200
    assert f'class="alert-new" data-id="{fresh.id}"' in html
    assert f'class="alert-overdue" data-id="{late.id}"' in html
    assert f'class="" data-id="{done.id}"' in html
    assert 'id="overdue-count" style="color:#b91c1c">1<' in html
    assert "setInterval(poll" in html and "http" not in html.split("<script>")[1].split("</script>")[0]  # no CDN


def test_the_list_reaches_older_alerts_page_by_page(as_admin, monkeypatch):
    from server.console import alerts as alert_views

    monkeypatch.setattr(alert_views, "PAGE", 2)
    made = [_raise(str(n), f"城管暴力执法 第{n}次") for n in range(3)]
    first = as_admin.get("/admin/alerts").get_data(as_text=True)
    assert "第2次" in first and "第1次" in first and "第0次" not in first
    older = as_admin.get(f"/admin/alerts?before={made[1].id}").get_data(as_text=True)
    assert f"before={made[1].id}" in first and "第0次" in older and "第1次" not in older
    assert "更早的舆情" not in older and "最新的舆情" in older  # the oldest page: no link to an empty one


def test_feed_returns_only_newer_alerts(as_admin):
    first = _raise("1")
    second = _raise("2", "打人了")
    data = as_admin.get(f"/admin/alerts/feed?after={first.id}").get_json()
    assert [a["id"] for a in data["alerts"]] == [second.id]
    assert data["latest_id"] == second.id and data["open"] == 2 and data["overdue"] == 0
    assert as_admin.get(f"/admin/alerts/feed?after={second.id}").get_json()["alerts"] == []


def test_acknowledge_from_the_console_records_who(as_admin, admin):
    alert = _raise("1")
    res = as_admin.post(f"/admin/alerts/{alert.id}/ack", {"note": "已核实"})
    assert res.status_code == 302
    alert = db.session.get(Alert, alert.id, populate_existing=True)
    assert alert.status is AlertStatus.ACKNOWLEDGED and alert.acknowledged_by_id == admin.id
    detail = as_admin.get(f"/admin/alerts/{alert.id}").get_data(as_text=True)
    assert "管理员甲" in detail and "已核实" in detail
    as_admin.post(f"/admin/alerts/{alert.id}/close", {"note": "已回应"})
    assert db.session.get(Alert, alert.id, populate_existing=True).status is AlertStatus.CLOSED
    actions = [a.action for a in db.session.scalars(sa.select(AuditLog).where(AuditLog.action.like("alert.%")))]
    assert actions == ["alert.create", "alert.acknowledge", "alert.close"]


def test_term_added_in_console_takes_effect(as_admin):
    as_admin.get("/admin/alerts/terms")
    res = as_admin.post("/admin/alerts/terms", {"term": "乱罚款", "weight": "6"})
    assert res.status_code == 302
    assert alerts.scan_text("o-fan", "城管乱罚款", source="message", ref="9") is not None
    html = as_admin.get("/admin/alerts/terms", query_string={"text": "城管乱罚款"}).get_data(as_text=True)
    assert "会产生舆情预警" in html


def test_term_edit_and_validation(as_admin):
    as_admin.get("/admin/alerts/terms")
    term = db.session.scalars(sa.select(SensitiveTerm).filter_by(term="暴力执法")).one()
    as_admin.post(f"/admin/alerts/terms/{term.id}", {"weight": "2", "enabled": "1"})
    assert not alerts.match("暴力执法").alerting
    res = as_admin.post("/admin/alerts/terms", {"term": "", "weight": "3"})
    assert res.status_code == 400 and "敏感词不能为空" in res.get_data(as_text=True)
    res = as_admin.post("/admin/alerts/terms", {"term": "新词", "weight": "abc"})
    assert res.status_code == 400 and "权重须为整数" in res.get_data(as_text=True)


def test_settings_and_duty_roster(as_admin):
    editor = factories.staff("editor2", "editor")
    as_admin.get("/admin/alerts/terms")
    res = as_admin.post("/admin/alerts/settings", {"threshold": "0", "sla_minutes": "30", "template_id": ""})
    assert res.status_code == 400 and "预警阈值" in res.get_data(as_text=True)
    as_admin.post("/admin/alerts/settings", {"threshold": "8", "sla_minutes": "15", "template_id": "tmpl"})
    assert alerts.settings() == {"threshold": 8, "sla_minutes": 15, "template_id": "tmpl"}
    as_admin.post("/admin/alerts/duty", {"staff_id": [str(editor.id)]})
    assert list(db.session.scalars(sa.select(AlertDuty.staff_id))) == [editor.id]
    html = as_admin.get("/admin/alerts/terms").get_data(as_text=True)
    assert "未绑定微信" in html


@pytest.mark.parametrize("role", ["liaison", "officer"])
def test_liaisons_and_officers_get_403(console, db_session, role):
    factories.staff("someone", role, unit=factories.unit("某中队"))
    console.login("someone")
    alert = _raise("1")
    for path in ("/admin/alerts", "/admin/alerts/feed", f"/admin/alerts/{alert.id}", "/admin/alerts/terms"):
        assert console.get(path).status_code == 403, path
    assert console.post(f"/admin/alerts/{alert.id}/ack").status_code == 403


def test_reviewers_see_and_acknowledge_but_do_not_edit_terms(console, db_session):
    factories.staff("reviewer1", "reviewer")
    console.login("reviewer1")
    alert = _raise("1")
    assert console.get("/admin/alerts").status_code == 200
    assert console.post(f"/admin/alerts/{alert.id}/ack").status_code == 302
    assert console.get("/admin/alerts/terms").status_code == 403
    assert console.post("/admin/alerts/terms", {"term": "x", "weight": "1"}).status_code == 403


def test_an_escalation_no_one_received_says_so(as_admin):
    alert = _raise("9")
    alert.escalated_at = utcnow()  # past the SLA; no B post or admin has WeChat bound: no notice went out
    db.session.commit()
    page = as_admin.get(f"/admin/alerts/{alert.id}").get_data(as_text=True)
    assert 'id="escalation-unsent"' in page and "没有人收到通知" in page and "已通知" not in page
