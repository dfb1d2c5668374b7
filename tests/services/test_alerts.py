"""Alerts: the automaton and its cache, weights and threshold, idempotency, duty notices, acknowledgement, SLA."""

from __future__ import annotations

from datetime import timedelta

import ahocorasick
import pytest
import sqlalchemy as sa

from models import Alert, AlertNotice, AlertStatus, AuditLog, NoticeRound, Role, SensitiveTerm, utcnow
from server.extensions import db
from server.services import ServiceError, alerts, audit
from tests import factories

TEMPLATE = "tmpl-alert"


@pytest.fixture(autouse=True)
def terms(db_session):
    """The default list (the migration's seed, re-added in case a committed-data test emptied the table)."""
    alerts.seed_default_terms()
    alerts.terms_changed()  # no automaton survives from an earlier test's rolled-back data
    yield
    alerts.terms_changed()


def _alerts() -> list[Alert]:
    return list(db.session.scalars(sa.select(Alert).order_by(Alert.id)))


def _person(username: str, role: str = "editor", openid: str | None = None, **kwargs):
    person = factories.staff(username, role, **kwargs)
    person.openid = openid
    db.session.commit()
    return person


def test_the_automaton_finds_overlapping_terms():
    found = alerts.match("我要12345投诉城管")
    assert set(found.terms) == {"12345投诉", "投诉城管", "城管"}  # a loop of `in` over disjoint cuts would not
    assert found.score == 3 + 4 + 1
    assert isinstance(alerts._cache.get().automaton, ahocorasick.Automaton)


def test_spaces_width_and_case_are_ignored():
    assert "12345投诉" in alerts.match("打了１２３４５ 投 诉").terms
    alerts.save_term(term="CCTV", weight=2)
    assert "cctv" in alerts.match("我找cctv").terms


def test_weights_sum_to_the_threshold():
    assert not alerts.match("有记者在").alerting  # 3 < 5
    assert alerts.match("有记者在，要曝光").alerting  # 3 + 3
    assert alerts.match("记者记者记者").score == 3  # a repeated term counts once
    alerts.save_settings(threshold=7, sla_minutes=30, template_id="")
    assert not alerts.match("有记者在，要曝光").alerting
    term = db.session.scalars(sa.select(SensitiveTerm).filter_by(term="记者")).one()
    alerts.save_term(term="记者", weight=5, existing=term)
    assert alerts.match("有记者在，要曝光").alerting  # 5 + 3


def test_below_threshold_creates_nothing():
    assert alerts.scan_text("o-fan", "记者", source="message", ref="1") is None
    assert _alerts() == []


def test_one_alert_per_source_and_ref():
    first = alerts.scan_text("o-fan", "城管暴力执法！", source="message", ref="100")
    again = alerts.scan_text("o-fan", "城管暴力执法！", source="message", ref="100")
    tip = alerts.scan_text("o-fan", "城管暴力执法！", source="tip", ref="100")
    assert first is not None and again is None and tip is not None
    assert [(a.source, a.ref) for a in _alerts()] == [("message", "100"), ("tip", "100")]
    assert first.terms == ["城管", "暴力执法"] and first.score == 6 and first.status is AlertStatus.NEW


def test_without_a_ref_the_same_text_from_the_same_person_is_one_alert():
    alerts.scan_text("o-fan", "有人打人了", source="message")
    alerts.scan_text("o-fan", "有人打人了", source="message")
    alerts.scan_text("o-other", "有人打人了", source="message")
    assert len(_alerts()) == 2


def test_disabling_a_term_takes_effect_at_once():
    term = db.session.scalars(sa.select(SensitiveTerm).filter_by(term="暴力执法")).one()
    alerts.save_term(term="暴力执法", weight=5, enabled=False, existing=term)
    assert "暴力执法" not in alerts.match("暴力执法").terms
    assert db.session.scalars(sa.select(AuditLog).filter_by(action="alert_term.update")).one().after["enabled"] is False


def test_another_process_edit_is_seen_after_the_version_moves(monkeypatch, redis_client):
    assert alerts.match("占道经营").terms == ()
    # Another process adds a term: a row, and a new version in Redis (this process's cache is not cleared).
    db.session.add(SensitiveTerm(term="占道经营", weight=9))
    db.session.commit()
    redis_client.set(alerts.VERSION_KEY, "from-another-process")
    assert alerts.match("占道经营").terms == ()  # within the second: the cached automaton, no Redis read
    clock = alerts.time.monotonic() + alerts.CACHE_SECONDS + 0.1
    monkeypatch.setattr(alerts.time, "monotonic", lambda: clock)
    assert alerts.match("占道经营").terms == ("占道经营",)


def test_a_miss_touches_neither_database_nor_redis():
    alerts.match("预热")  # build the automaton once
    statements: list[str] = []
    conn = db.session.connection()
    sa.event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alerts, "get_redis", lambda: pytest.fail("redis read on a miss"))
        assert alerts.scan_text("o-fan", "你好，请问开放日几点开始？", source="message", ref="7") is None
        assert alerts.scan_text("o-fan", "有记者", source="message", ref="8") is None  # a hit below threshold
    assert statements == []


def test_unknown_source_is_a_programming_error():
    with pytest.raises(ValueError):
        alerts.scan_text("o-fan", "暴力执法", source="blog", ref="1")


def test_term_validation():
    with pytest.raises(ServiceError, match="不能为空"):
        alerts.save_term(term="  ", weight=3)
    with pytest.raises(ServiceError, match="权重"):
        alerts.save_term(term="新词", weight=0)
    with pytest.raises(ServiceError, match="已存在"):
        alerts.save_term(term="暴力 执法", weight=3)  # normalised to an existing term


@pytest.fixture
def duty(db_session, emulator):
    editor = _person("duty1", "editor", "o-duty")
    alerts.set_duty([editor.id])
    alerts.save_settings(threshold=5, sla_minutes=30, template_id=TEMPLATE)
    emulator.hook("users", {"openids": ["o-duty", "o-admin", "o-b"]})
    return editor


def _sent(emulator) -> list[dict]:
    return [t for t in emulator.state()["templates_sent"] if t["template_id"] == TEMPLATE]


def test_duty_editor_gets_a_template_message_once(app, duty, emulator, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://wx.example.gov.cn/")
    alert = alerts.scan_text("o-fan", "城管暴力执法，我要找记者曝光", source="message", ref="200")
    sent = _sent(emulator)
    assert [t["touser"] for t in sent] == ["o-duty"]
    assert sent[0]["data"]["thing1"]["value"] == "新舆情预警"
    assert sent[0]["data"]["character_string4"]["value"] == f"A{alert.id}"
    assert sent[0]["url"] == f"https://wx.example.gov.cn/admin/alerts/{alert.id}"
    alerts.notify(alert.id, "duty")  # a redelivered task
    assert len(_sent(emulator)) == 1
    notice = db.session.scalars(sa.select(AlertNotice)).one()
    assert notice.staff_id == duty.id and notice.sent_at is not None and notice.round is NoticeRound.DUTY


SEND = "cgi-bin/message/template/send"


def test_a_failed_notice_is_sent_again_by_the_sweep_after_its_backoff(duty, emulator):
    emulator.hook("fail", {"path": SEND, "errcode": -1, "errmsg": "system error", "times": 1})
    alert = alerts.scan_text("o-fan", "暴力执法", source="message", ref="500")
    notice = db.session.scalars(sa.select(AlertNotice)).one()
    assert notice.sent_at is None and notice.attempts == 1 and notice.error.startswith("-1")
    assert alerts.sweep()["retried"] == 0  # its backoff (1 minute) is not over
    notice.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert alerts.sweep()["retried"] == 1
    db.session.refresh(notice)
    assert notice.sent_at is not None and notice.attempts == 2
    assert [t["touser"] for t in _sent(emulator)] == ["o-duty"]
    alerts.acknowledge(alert.id)


def test_a_permanent_refusal_is_given_up_at_once(duty, emulator):
    emulator.hook("fail", {"path": SEND, "errcode": 43004, "errmsg": "require subscribe", "times": 1})
    alerts.scan_text("o-fan", "暴力执法", source="message", ref="501")
    notice = db.session.scalars(sa.select(AlertNotice)).one()
    assert notice.attempts == alerts.MAX_NOTICE_ATTEMPTS and notice.error.startswith("43004")
    notice.next_attempt_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert alerts.sweep()["retried"] == 0 and _sent(emulator) == []


def test_a_notice_is_claimed_by_one_run_only(duty, emulator):
    alert = alerts.scan_text("o-fan", "暴力执法", source="message", ref="502")
    notice = db.session.scalars(sa.select(AlertNotice)).one()
    notice.sent_at, notice.next_attempt_at = None, None  # as if the first run were still sending
    db.session.commit()
    now = utcnow()
    assert alerts._claim_notice(notice.id, now) is True
    assert alerts._claim_notice(notice.id, now) is False  # the lease holds until the first run's outcome
    assert alerts.notify(alert.id, "duty") == 0 and len(_sent(emulator)) == 1


def test_without_template_id_nothing_is_sent(duty, emulator):
    alerts.save_settings(threshold=5, sla_minutes=30, template_id="")
    assert alerts.scan_text("o-fan", "暴力执法", source="message", ref="201") is not None
    assert emulator.state()["templates_sent"] == []


def test_acknowledgement_records_who_and_when(duty):
    alert = alerts.scan_text("o-fan", "暴力执法", source="tip", ref="T0001")
    token = audit.set_actor(audit.Actor(duty.id, duty.name, "10.0.0.1"))
    try:
        acked = alerts.acknowledge(alert.id, "已联系中队")
        alerts.acknowledge(alert.id, "再点一次")  # changes nothing
    finally:
        audit.reset_actor(token)
    assert acked.status is AlertStatus.ACKNOWLEDGED
    assert acked.acknowledged_by_id == duty.id and acked.acknowledged_by_name == "duty1"
    assert acked.acknowledged_at is not None and acked.note == "已联系中队"
    entries = db.session.scalars(sa.select(AuditLog).filter_by(action="alert.acknowledge")).all()
    assert len(entries) == 1 and entries[0].staff_id == duty.id


def test_escalation_after_sla_goes_once_to_b_post_and_admins(duty, emulator):
    unit = factories.unit("浦东分局")
    b_post = _person("bpost", "editor", "o-b")
    admin = _person("admin9", "admin", "o-admin")
    unit.post_b_id = b_post.id
    duty.unit_id = unit.id
    db.session.commit()
    late = alerts.scan_text("o-fan", "暴力执法", source="message", ref="300")
    fresh = alerts.scan_text("o-fan", "打人了", source="message", ref="301")
    done = alerts.scan_text("o-fan", "殴打", source="message", ref="302")
    for alert in (late, done):
        alert.created_at = utcnow() - timedelta(minutes=31)
    db.session.commit()
    alerts.acknowledge(done.id)

    assert alerts.sweep() == {"escalated": 1, "renotified": 0, "retried": 0}
    escalations = [t for t in _sent(emulator) if t["data"]["thing1"]["value"] == "舆情超时未确认"]
    assert sorted(t["touser"] for t in escalations) == ["o-admin", "o-b"]
    assert db.session.get(Alert, late.id, populate_existing=True).escalated_at is not None
    assert db.session.get(Alert, fresh.id, populate_existing=True).escalated_at is None

    assert alerts.sweep()["escalated"] == 0  # once only
    assert len([t for t in _sent(emulator) if t["data"]["thing1"]["value"] == "舆情超时未确认"]) == 2
    assert db.session.scalars(sa.select(AuditLog).filter_by(action="alert.escalate")).one().target_id == str(late.id)
    assert admin.id in {n.staff_id for n in db.session.scalars(sa.select(AlertNotice).filter_by(round="ESCALATION"))}


def test_only_people_who_may_read_alerts_are_told_of_one(duty, emulator):
    unit = factories.unit("浦东分局")
    officer_b = _person("officerb", "officer", "o-b", unit=unit)  # an officer as the unit's B post
    unit.post_b_id, duty.unit_id = officer_b.id, unit.id
    db.session.commit()
    late = alerts.scan_text("o-fan", "暴力执法", source="message", ref="310")
    late.created_at = utcnow() - timedelta(minutes=31)
    duty.role = Role.LIAISON  # demoted after being put on the roster
    db.session.commit()
    assert alerts.sweep()["escalated"] == 1
    assert _sent(emulator)[0]["touser"] == "o-duty"  # the first notice, sent while duty1 was an editor
    assert [t["touser"] for t in _sent(emulator)[1:]] == []  # neither the officer nor the demoted liaison


def test_the_sweep_sends_notices_that_were_never_enqueued(duty, emulator):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alerts, "_enqueue_notify", lambda *args: None)  # the broker was down
        alert = alerts.scan_text("o-fan", "暴力执法", source="message", ref="400")
    alert.created_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    assert alerts.sweep()["renotified"] == 1
    assert [t["touser"] for t in _sent(emulator)] == ["o-duty"]


def test_duty_roster_accepts_only_console_users(db_session):
    officer = factories.staff("officer1", "officer", unit=factories.unit("中队"), password="")
    with pytest.raises(ServiceError):
        alerts.set_duty([officer.id])
