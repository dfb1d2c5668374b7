"""Console: create an event and a session, see masked registrations, export (audited), scan, walk-in, roles."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import sqlalchemy as sa

from models import AuditKind, AuditLog, Event, EventSession, Registration
from server.extensions import db
from server.services import events
from server.services.events import Applicant
from server.wechat import jssdk
from tests import factories
from tests.services.test_events import make_event


def test_create_event_and_session_from_the_console(as_admin):
    res = as_admin.get("/admin/events")
    assert res.status_code == 200 and "新建活动" in res.get_data(as_text=True)
    as_admin.get("/admin/events/new")
    res = as_admin.post(
        "/admin/events/new",
        {
            "title": "微访城市管理",
            "kind": "offline",
            "registration_opens_at": "2030-07-01T09:00",
            "registration_closes_at": "2030-07-10T18:00",
            "max_companions": "2",
            "required_fields": ["name", "phone", "id_number"],
            "questions": "您从哪里得知活动？",
            "hold_minutes": "60",
            "retention_days": "30",
            "published": "on",
        },
    )
    assert res.status_code == 302
    event = db.session.scalar(sa.select(Event).filter_by(title="微访城市管理"))
    assert event.registration_opens_at.hour == 1  # 09:00 Beijing is 01:00 UTC
    assert event.required_fields == ["name", "phone", "id_number"]
    res = as_admin.post(
        f"/admin/events/{event.id}/sessions",
        {"starts_at": "2030-07-15T09:00", "ends_at": "2030-07-15T11:30", "quota": "300", "venue": "城管执法局"},
    )
    assert res.status_code == 302
    session = db.session.scalar(sa.select(EventSession).filter_by(event_id=event.id))
    assert session.quota == 300
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditLog.action.like("event.%"))) == 2


def test_form_errors_are_shown(as_admin):
    as_admin.get("/admin/events/new")
    res = as_admin.post("/admin/events/new", {"title": "", "kind": "offline"})
    assert res.status_code == 400 and "请填写活动名称" in res.get_data(as_text=True)


def test_list_is_masked_and_export_is_an_audited_excel(as_admin):
    from openpyxl import load_workbook

    event, (session,) = make_event(fields=("name", "phone", "id_number"))
    events.register(
        "oA", event.id, session.id, Applicant(name="王小明", phone="13812340000", id_number="11010519491231002X")
    )
    page = as_admin.get(f"/admin/events/{event.id}").get_data(as_text=True)
    assert "138****0000" in page and "13812340000" not in page and "王**" in page
    res = as_admin.client.get(f"/admin/events/{event.id}/sessions/{session.id}/export")
    assert res.status_code == 200 and res.mimetype.endswith("spreadsheetml.sheet")
    rows = list(load_workbook(io.BytesIO(res.data)).active.iter_rows(values_only=True))
    assert rows[1][1:4] == ("王小明", "13812340000", "11010519491231002X")
    entry = db.session.scalar(sa.select(AuditLog).filter_by(action="event.export"))
    assert entry.kind is AuditKind.EXPORT and entry.staff_name == "管理员甲" and entry.note.endswith("：1 条")


def test_a_big_session_is_listed_a_page_at_a_time_in_sign_up_order(as_admin, monkeypatch):
    monkeypatch.setattr(events, "ROWS_PER_PAGE", 2)
    event, (session,) = make_event(quota=10, fields=("name",))
    for name in ("甲一", "乙二", "丙三"):
        events.register(f"o-{name}", event.id, session.id, Applicant(name=name))
    first = as_admin.get(f"/admin/events/{event.id}?session={session.id}").get_data(as_text=True)
    assert "甲*" in first and "乙*" in first and "丙*" not in first and "第 1 / 2 页" in first
    last = as_admin.get(f"/admin/events/{event.id}?session={session.id}&page=2").get_data(as_text=True)
    assert "丙*" in last and "甲*" not in last and "<td>3</td>" in last  # numbered by sign-up position
    assert "丙*" in as_admin.get(f"/admin/events/{event.id}?session={session.id}&page=99").get_data(as_text=True)


def test_scan_page_and_check_in_with_nonces(console, db_session):
    factories.staff("liaison1", "liaison", unit=factories.unit())
    console.login("liaison1")
    event, (session,) = make_event()
    reg, _ = events.register("oA", event.id, session.id)
    page = console.get(f"/admin/events/{event.id}/scan")
    assert page.status_code == 200 and "扫码签到" in page.get_data(as_text=True)
    token = events.checkin_token(reg)
    headers = {"X-CSRFToken": console.token}
    url = f"/admin/events/{event.id}/scan"
    first = console.client.post(url, json={"token": token, "nonce": "a"}, headers=headers).get_json()
    assert first["status"] == "valid"
    assert (
        console.client.post(url, json={"token": token, "nonce": "a"}, headers=headers).get_json()["status"] == "valid"
    )
    second = console.client.post(url, json={"token": token, "nonce": "b"}, headers=headers).get_json()
    assert second["status"] == "used" and second["at"] == first["at"]
    assert re.fullmatch(r"\d\d月\d\d日 \d\d:\d\d:\d\d", second["at"])  # with its day: a reused ticket may be old
    bad = console.client.post(url, json={"token": "E1.xx.yy", "nonce": "c"}, headers=headers).get_json()
    assert bad["status"] == "invalid"
    # liaisons scan but do not manage
    assert console.get(f"/admin/events/{event.id}/edit").status_code == 403
    assert console.client.get(f"/admin/events/{event.id}/sessions/{session.id}/export").status_code == 403


def test_a_scan_body_that_is_not_an_object_is_an_invalid_ticket_not_a_500(as_admin):
    event, _ = make_event()
    url, headers = f"/admin/events/{event.id}/scan", {"X-CSRFToken": as_admin.token}
    for body in ('"E1.xx.yy"', "1", "[]", "null"):
        res = as_admin.client.post(url, data=body, content_type="application/json", headers=headers)
        assert res.status_code == 200 and res.get_json()["status"] == "invalid", body


def test_scan_page_for_one_session_refuses_other_sessions_tickets(console, db_session):
    factories.staff("liaison1", "liaison", unit=factories.unit())
    console.login("liaison1")
    event, (first, second) = make_event(sessions=2)
    reg, _ = events.register("oA", event.id, second.id)
    page = console.get(f"/admin/events/{event.id}/scan", query_string={"session": first.id}).get_data(as_text=True)
    assert "全部场次" in page and f'data-session="{first.id}"' in page
    assert f'<option value="{first.id}" selected>' in page
    url, headers = f"/admin/events/{event.id}/scan", {"X-CSRFToken": console.token}
    body = {"token": events.checkin_token(reg), "nonce": "a", "session_id": str(first.id)}
    wrong = console.client.post(url, json=body, headers=headers).get_json()
    when = events.local_dt(second.starts_at, "%m-%d %H:%M")
    assert wrong["status"] == "invalid" and wrong["message"] == f"不是本场次的二维码（该票为 {when} 场）"
    assert db.session.get(Registration, reg.id).checked_in_at is None
    right = console.client.post(url, json=body | {"session_id": second.id}, headers=headers).get_json()
    assert right["status"] == "valid"
    assert 'data-session=""' in console.get(url).get_data(as_text=True)  # no choice: every session


def test_jssdk_config_for_pages_of_this_site_only(console, db_session, emulator):
    factories.staff("liaison1", "liaison", unit=factories.unit())
    console.login("liaison1")
    page = "http://localhost/admin/events/1/scan?session=2"
    res = console.client.get("/admin/events/jssdk-config", query_string={"url": page})
    assert res.status_code == 200 and res.headers["Cache-Control"] == "no-store"
    config = res.get_json()
    (ticket,) = emulator.state()["jsapi_tickets"]
    assert config["signature"] == jssdk.signature(ticket, config["nonceStr"], config["timestamp"], page)
    for foreign in ("https://evil.example.cn/admin/events/1/scan", "javascript:alert(1)", "http://[::1", ""):
        res = console.client.get("/admin/events/jssdk-config", query_string={"url": foreign})
        assert res.status_code == 400 and "本站" in res.get_json()["error"]


def test_jssdk_config_answers_503_when_wechat_fails(console, db_session, emulator, redis_client):
    factories.staff("liaison1", "liaison", unit=factories.unit())
    console.login("liaison1")
    emulator.hook("fail", {"path": "cgi-bin/ticket/getticket", "errcode": -1, "errmsg": "system error"})
    res = console.client.get("/admin/events/jssdk-config", query_string={"url": "http://localhost/admin/events"})
    assert res.status_code == 503 and "微信" in res.get_json()["error"]


def test_jssdk_config_is_for_scanners_only(console, db_session):
    factories.staff("reviewer1", "reviewer")
    console.login("reviewer1")
    res = console.client.get("/admin/events/jssdk-config", query_string={"url": "http://localhost/admin/events"})
    assert res.status_code == 403


def test_walk_in_from_the_console(as_admin):
    event, (session,) = make_event(quota=1)
    as_admin.get(f"/admin/events/{event.id}")
    res = as_admin.post(
        f"/admin/events/{event.id}/walk-in", {"session_id": session.id, "name": "李四", "companions": "0"}
    )
    assert res.status_code == 302
    reg = db.session.scalar(sa.select(Registration).filter_by(walk_in=True))
    assert reg.checked_in_at is not None


def test_walk_in_at_the_gate_stays_on_the_scan_page(as_admin):
    event, (first, second) = make_event(quota=1, sessions=2)
    page = as_admin.get(f"/admin/events/{event.id}/scan").get_data(as_text=True)
    assert "请先在上方选择场次" in page and "登记并签到" not in page  # no session picked: nowhere to add them
    page = as_admin.get(f"/admin/events/{event.id}/scan", query_string={"session": second.id}).get_data(as_text=True)
    assert "登记并签到" in page and f'name="session_id" value="{second.id}"' in page
    form = {"session_id": second.id, "name": "王五", "companions": "0", "next": "scan"}
    res = as_admin.post(f"/admin/events/{event.id}/walk-in", form)
    assert res.status_code == 302
    assert res.headers["Location"].endswith(f"/admin/events/{event.id}/scan?session={second.id}")
    page = as_admin.get(res.headers["Location"]).get_data(as_text=True)
    assert "现场登记成功，已签到" in page
    reg = db.session.scalar(sa.select(Registration).filter_by(walk_in=True))
    assert reg.session_id == second.id and reg.checked_in_at is not None
    res = as_admin.post(f"/admin/events/{event.id}/walk-in", form | {"name": "赵六"})  # second.quota is 1: full
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and 'class="flash error"' in page and "本场名额已满" in page


def test_a_refused_walk_in_keeps_what_staff_typed(as_admin):
    # A mistyped phone at the gate: the form comes back filled in, on the page staff were on, for that session.
    event, (first, second) = make_event(quota=1, sessions=2)
    form = {"session_id": second.id, "name": "王大爷", "phone": "1390000111", "companions": "2", "next": "scan"}
    res = as_admin.post(f"/admin/events/{event.id}/walk-in", form | {"over_quota": "on"})
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "手机号应为 11 位数字" in page
    assert "扫码签到" in page and f'name="session_id" value="{second.id}"' in page
    assert 'value="王大爷"' in page and 'value="1390000111"' in page and 'value="2"' in page
    assert re.search(r'name="over_quota" checked', page) and '<details class="walk-in" open>' in page
    assert f'action="/admin/events/{event.id}/scan"' in page  # the session picker still leads to the scan page
    res = as_admin.post(f"/admin/events/{event.id}/walk-in", form | {"next": ""})  # from the console's event page
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "报名名单" in page and 'value="王大爷"' in page and 'value="1390000111"' in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Registration)) == 0


def test_a_double_tap_on_walk_in_registers_the_visitor_once(as_admin):
    # At the gate on a slow network the button gets tapped twice: one visitor, one place, one check-in.
    event, (session,) = make_event(quota=5)
    walk_in_key = re.compile(rf'action="/admin/events/{event.id}/walk-in">.*?name="submit_key" value="([^"]+)"', re.S)
    for path in (f"/admin/events/{event.id}/scan", f"/admin/events/{event.id}"):  # the gate's page, the console's
        key = walk_in_key.search(as_admin.get(path, query_string={"session": session.id}).get_data(as_text=True))
        assert key, path
        form = {"session_id": session.id, "name": "王五", "companions": "1", "next": "scan", "submit_key": key.group(1)}
        first = as_admin.post(f"/admin/events/{event.id}/walk-in", form)
        second = as_admin.post(f"/admin/events/{event.id}/walk-in", form)
        assert first.status_code == second.status_code == 302
        assert second.headers["Location"] == first.headers["Location"]
    walk_ins = db.session.scalars(sa.select(Registration).filter_by(walk_in=True)).all()
    assert len(walk_ins) == 2  # one per form, not one per tap
    assert db.session.get(EventSession, session.id, populate_existing=True).taken == 4


def test_moving_a_session_tells_the_console_how_many_were_notified(as_admin, emulator):
    emulator.hook("users", {"users": [{"openid": "oA"}, {"openid": "oB"}]})
    event, (session,) = make_event(quota=1, companions=0)
    events.register("oA", event.id, session.id)
    events.register("oB", event.id, session.id)  # waiting: told too
    page = as_admin.get(f"/admin/events/{event.id}", query_string={"session": session.id}).get_data(as_text=True)
    assert "会收到变更通知" in page
    form = {"starts_at": "2031-07-15T09:00", "ends_at": "2031-07-15T11:00", "quota": "1", "venue": "市民中心"}
    res = as_admin.post(f"/admin/events/{event.id}/sessions/{session.id}", form)
    page = as_admin.get(res.headers["Location"]).get_data(as_text=True)
    assert "将向 2 位报名者（含候补）发送通知" in page
    assert sorted(m["touser"] for m in emulator.state()["templates_sent"]) == ["oA", "oB"]
    res = as_admin.post(f"/admin/events/{event.id}/sessions/{session.id}", form | {"quota": "3"})
    assert "场次已保存</" in as_admin.get(res.headers["Location"]).get_data(as_text=True)  # quota alone: no news


def test_calling_a_session_off_from_the_console(as_admin, emulator):
    emulator.hook("users", {"users": [{"openid": "oA"}, {"openid": "oB"}]})
    event, (session,) = make_event(quota=1, companions=0)
    events.register("oA", event.id, session.id)
    events.register("oB", event.id, session.id)  # waiting: told too
    url = f"/admin/events/{event.id}/sessions/{session.id}/cancel"
    page = as_admin.get(f"/admin/events/{event.id}", query_string={"session": session.id}).get_data(as_text=True)
    assert "取消本场次" in page and "此操作不能撤回" in page
    res = as_admin.post(url, data={"reason": "雨"})
    assert "请填写取消原因" in as_admin.get(res.headers["Location"]).get_data(as_text=True)
    assert db.session.get(EventSession, session.id, populate_existing=True).cancelled_at is None
    res = as_admin.post(url, data={"reason": "受台风影响，本场活动取消"})
    page = as_admin.get(res.headers["Location"]).get_data(as_text=True)
    assert "场次已取消，将向 2 位报名者（含候补）发送取消通知" in page
    assert "本场次已于" in page and "受台风影响，本场活动取消" in page and "已取消</span>" in page
    assert "取消本场次" not in page and "修改场次 " not in page  # nothing left to do with it
    assert sorted(m["touser"] for m in emulator.state()["templates_sent"]) == ["oA", "oB"]
    entry = db.session.scalar(sa.select(AuditLog).where(AuditLog.action == "event.session_cancel"))
    assert entry.after == {"reason": "受台风影响，本场活动取消", "registrations": 2}
    scan = as_admin.get(f"/admin/events/{event.id}/scan").get_data(as_text=True)
    assert "现场登记：本场次已取消（受台风影响，本场活动取消）" in scan and "登记并签到" not in scan


def test_reminders_wechat_refused_are_counted_with_their_reasons_on_the_session(as_admin, emulator):
    emulator.hook("users", {"users": [{"openid": "oA"}, {"openid": "oB"}, {"openid": "oC", "subscribe": 0}]})
    event, (session,) = make_event(quota=10, starts_in=timedelta(hours=3))
    for openid in ("oA", "oB", "oC"):
        events.register(openid, event.id, session.id)
    # oA declines this kind of message, oC has unfollowed: no retry will reach them, and staff should know
    emulator.hook("fail", {"path": "cgi-bin/message/template/send", "errcode": 43101})
    assert events.send_due_reminders() == 1
    page = as_admin.get(f"/admin/events/{event.id}", query_string={"session": session.id}).get_data(as_text=True)
    row = re.search(r"<tr class=\"notice-tally\">(.*?)</tr>", page, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells == ["前一天提醒", "1", "0", "2", "43004 用户未关注公众号（1）；43101 用户拒收：未订阅此类消息（1）"]


def test_reviewer_cannot_edit_events(console, db_session):
    factories.staff("reviewer1", "reviewer")
    console.login("reviewer1")
    assert console.get("/admin/events").status_code == 200
    assert console.get("/admin/events/new").status_code == 403


def stat_card(page: str, label: str) -> str:
    """The card whose label is `label`, as its HTML after the label."""
    return page.split(f'<div class="card stat"><div class="label">{label}</div>')[1].split('<div class="card')[0]


def test_numbers_are_stat_cards_with_the_people_apart(as_admin):
    event, (session,) = make_event(companions=2)
    events.register("oA", event.id, session.id, Applicant(companions=2))
    events.register("oB", event.id, session.id)
    page = as_admin.get(f"/admin/events/{event.id}").get_data(as_text=True)
    # The count and the head count in blocks of their own, not run together as 「报名24 人」.
    assert stat_card(page, "报名").startswith('<div class="value">2</div><div class="hint">4 人（含同行）</div>')
    for label in ("签到", "未到", "候补"):
        assert stat_card(page, label).startswith('<div class="value">0</div>')
    listing = as_admin.get("/admin/events").get_data(as_text=True)
    assert stat_card(listing, "报名 / 签到 / 未到").startswith('<div class="value">2 / 0 / 0</div>')


def test_the_list_counts_no_places_of_a_called_off_session(as_admin):
    event, (kept, off) = make_event(quota=3, sessions=2)
    events.register("oA", event.id, kept.id)
    events.cancel_session(off, "暴雨预警")
    db.session.expire_all()  # the test's session saw the sessions before the place was taken
    page = as_admin.get("/admin/events").get_data(as_text=True)
    row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*{event.title}(?:(?!</tr>).)*</tr>", page, re.S)
    assert row and "1 / 3" in row.group(0)


def test_a_refused_session_comes_back_with_what_was_typed(as_admin):
    event, _ = make_event()
    typed = {"starts_at": "2030-07-15T14:00", "ends_at": "2030-07-15T13:00", "quota": "120", "venue": "市民中心二楼"}
    res = as_admin.post(f"/admin/events/{event.id}/sessions", typed, follow_redirects=True)
    page = res.get_data(as_text=True)
    assert "结束须晚于开始" in page
    assert 'value="2030-07-15T14:00"' in page and 'value="120"' in page and 'value="市民中心二楼"' in page
    assert 'value="市民中心二楼"' not in as_admin.get(f"/admin/events/{event.id}").get_data(as_text=True)  # once


def test_an_event_next_year_shows_its_figures_now(as_admin):
    event, (session,) = make_event(starts_in=timedelta(days=400), opens_in=timedelta(hours=-1))
    events.register("oEarly", event.id, session.id)
    db.session.expire_all()
    page = as_admin.get(f"/admin/events/{event.id}").get_data(as_text=True)
    assert re.search(r'<div class="label">报名</div><div class="value">1</div>', page)


def test_a_time_before_the_first_year_in_utc_is_refused_not_a_500(as_admin):
    # Found by tests/test_form_mutations.py: 0001-01-01 00:00 in Beijing is before year 1 in UTC (OverflowError).
    event, [session] = make_event()
    form = {"title": "开放日", "kind": "offline", "registration_opens_at": "0001-01-01T00:00"}
    assert as_admin.post(f"/admin/events/{event.id}/edit", form).status_code == 400
    form = {"starts_at": "0001-01-01T00:00", "ends_at": "0001-01-01T02:00", "quota": "5", "venue": "北广场"}
    res = as_admin.post(f"/admin/events/{event.id}/sessions/{session.id}", form, follow_redirects=True)
    assert res.status_code in (200, 400) and "北广场" in res.get_data(as_text=True)  # refused, what was typed kept
    db.session.expire_all()
    assert db.session.get(EventSession, session.id).venue != "北广场"
