"""Citizen pages for events: list, detail with live places and countdown, register, my registrations, QR, cancel."""

from __future__ import annotations

import re
from datetime import timedelta

from models import Registration, RegistrationStatus
from server.extensions import db
from server.services import events
from tests.services.test_events import make_event


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_register_then_qr_then_cancel(client, citizen_login, db_session):
    event, (session,) = make_event(quota=2, fields=("name", "phone"))
    citizen_login("oCitizenA", path="/m/events")
    page = client.get("/m/events")
    assert "7·15 公众开放日" in page.get_data(as_text=True)
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert "剩余 2" in detail and "立即报名" in detail
    res = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": session.id, "name": "张三", "phone": "13800001111"},
    )
    assert res.status_code == 302 and res.headers["Location"].endswith("/m/events/mine")
    mine = client.get("/m/events/mine").get_data(as_text=True)
    assert "报名成功" in mine
    reg = db.session.query(Registration).filter_by(openid="oCitizenA").one()
    qr = client.get(f"/m/events/registrations/{reg.id}/qr.png")
    assert qr.status_code == 200 and qr.data.startswith(b"\x89PNG")
    places = client.get(f"/m/events/{event.id}/places").get_json()
    assert places["sessions"] == {str(session.id): 1} and places["open"] is True and places["now"] > 0
    # a double tap returns the same registration
    again = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(mine), "session_id": session.id, "name": "张三", "phone": "13800001111"},
        headers={"Accept": "application/json"},
    )
    assert again.get_json()["created"] is False and again.get_json()["registration_id"] == reg.id
    res = client.post(f"/m/events/registrations/{reg.id}/cancel", data={"csrf_token": csrf(mine)})
    assert res.status_code == 302
    assert "已取消报名，名额已释放。" in client.get("/m/events/mine").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Registration, reg.id).status is RegistrationStatus.CANCELLED
    assert client.get(f"/m/events/registrations/{reg.id}/qr.png").status_code == 404


def test_a_called_off_session_shows_so_and_cannot_be_picked(client, citizen_login, db_session):
    event, (session, other) = make_event(quota=2, sessions=2)
    citizen_login("oCitizenA", path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    reg_id = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": session.id},
        headers={"Accept": "application/json"},
    ).get_json()["registration_id"]
    events.cancel_session(session, "场馆检修，本场取消")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert "场馆检修，本场取消" in detail and "已取消</span>" in detail
    picked = re.findall(r'<input type="radio" name="session_id" value="(\d+)"[^>]*?(checked|disabled)', detail)
    assert picked == [(str(session.id), "disabled"), (str(other.id), "checked")]
    assert client.get(f"/m/events/{event.id}/places").get_json()["sessions"] == {str(other.id): 2}
    mine = client.get("/m/events/mine").get_data(as_text=True)
    assert "本场次已由主办方取消：场馆检修，本场取消" in mine
    assert db.session.get(Registration, reg_id).status is RegistrationStatus.CANCELLED
    res = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": session.id},
        headers={"Accept": "application/json"},
    )
    assert res.status_code == 400 and "该场次已取消" in res.get_json()["error"]


def test_someone_elses_qr_code_is_not_served(client, citizen_login, db_session):
    from server.services import events

    event, (session,) = make_event()
    reg, _ = events.register("oOwner", event.id, session.id)
    citizen_login("oIntruder", path="/m/events")
    assert client.get(f"/m/events/registrations/{reg.id}/qr.png").status_code == 404
    assert client.get(f"/m/events/registrations/{reg.id}/confirm").status_code == 405


def test_json_register_reports_waiting_list_when_full(client, citizen_login, db_session):
    from server.services import events

    event, (session,) = make_event(quota=1)
    events.register("oFirst", event.id, session.id)
    citizen_login("oSecond", path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert "已满" in detail
    res = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": session.id},
        headers={"Accept": "application/json"},
    )
    body = res.get_json()
    assert res.status_code == 200 and body["status"] == "waiting" and "候补" in body["message"]
    mine = client.get("/m/events/mine").get_data(as_text=True)
    assert "候补第 1 位" in mine
    reg = db.session.query(Registration).filter_by(openid="oSecond").one()
    client.post(f"/m/events/registrations/{reg.id}/cancel", data={"csrf_token": csrf(mine)})
    after = client.get("/m/events/mine").get_data(as_text=True)
    assert "已取消候补。" in after and "名额已释放" not in after  # a waiting entry held no place


def test_snapshot_visitor_may_look_but_not_register(client, citizen_login, db_session):
    event, (session,) = make_event()
    citizen_login("oSnapshot", snapshot=True, path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert "朋友圈预览" in detail and "立即报名" not in detail
    res = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": session.id},
        headers={"Accept": "application/json"},
    )
    assert res.status_code == 400 and "朋友圈" in res.get_json()["error"]
    assert db.session.query(Registration).count() == 0


def test_before_opening_the_page_counts_down_on_server_time(client, citizen_login, db_session):
    event, (session,) = make_event(opens_in=timedelta(minutes=5))
    citizen_login("oEarly", path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert 'data-server-now="' in detail and 'id="ev-countdown"' in detail
    res = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": session.id},
        headers={"Accept": "application/json"},
    )
    assert res.status_code == 400 and "尚未开始" in res.get_json()["error"]


def test_unpublished_event_is_not_found(client, citizen_login, db_session):
    event, _ = make_event()
    event.published = False
    db.session.commit()
    citizen_login("oA", path="/m/events")
    assert client.get(f"/m/events/{event.id}").status_code == 404


def test_a_refused_registration_keeps_what_was_typed(client, citizen_login, db_session):
    event, (first, second) = make_event(sessions=2, fields=("name", "phone"))
    citizen_login("oTypo", path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert 'pattern="1[0-9]{10}"' in detail and 'inputmode="numeric"' in detail  # the browser catches it first
    form = {
        "csrf_token": csrf(detail),
        "session_id": second.id,
        "name": "张三",
        "phone": "12345",
        "companions": "2",
        "answer_0": "想了解夜间执法",
    }
    res = client.post(f"/m/events/{event.id}/register", data=form)
    html = res.get_data(as_text=True)
    # the page again, not a redirect: nothing typed (least of all the phone) goes into a URL or a log line
    assert res.status_code == 400 and "Location" not in res.headers
    assert '<div class="error" role="alert">请填写 11 位手机号</div>' in html
    assert 'value="张三"' in html and 'value="12345"' in html and 'value="想了解夜间执法"' in html
    assert '<option value="2" selected>' in html
    picked = re.findall(r'<input type="radio" name="session_id" value="(\d+)"[^>]*?(checked)', html)
    assert picked == [(str(second.id), "checked")]
    assert db.session.query(Registration).count() == 0
    # fetch callers still get their JSON answer
    res = client.post(f"/m/events/{event.id}/register", data=form, headers={"Accept": "application/json"})
    assert res.status_code == 400 and res.get_json() == {"error": "请填写 11 位手机号"}
    # corrected, it goes through
    res = client.post(f"/m/events/{event.id}/register", data={**form, "phone": "13800001111"})
    assert res.status_code == 302 and res.headers["Location"].endswith("/m/events/mine")
    assert db.session.query(Registration).one().session_id == second.id


def test_a_livestream_is_booked_and_a_waiting_entry_cancelled_in_its_own_words(client, citizen_login, db_session):
    live, (stream,) = make_event(kind="livestream")
    full, (session,) = make_event(quota=1)
    events.register("oFirst", full.id, session.id)
    citizen_login("oViewer", path="/m/events")
    token = csrf(client.get(f"/m/events/{live.id}").get_data(as_text=True))
    client.post(f"/m/events/{live.id}/register", data={"csrf_token": token, "session_id": stream.id})
    client.post(f"/m/events/{full.id}/register", data={"csrf_token": token, "session_id": session.id})
    mine = client.get("/m/events/mine").get_data(as_text=True)
    booked = db.session.query(Registration).filter_by(openid="oViewer", event_id=live.id).one()
    waiting = db.session.query(Registration).filter_by(openid="oViewer", event_id=full.id).one()
    assert "预约成功，直播开始时会通知您。" in mine
    booked_card = _card(mine, booked.id)
    assert "预约成功" in booked_card and "报名成功" not in booked_card and ">取消预约</button>" in booked_card
    waiting_card = _card(mine, waiting.id)
    assert "候补中" in waiting_card and ">取消候补</button>" in waiting_card and "取消报名" not in waiting_card
    again = client.get(f"/m/events/{live.id}").get_data(as_text=True)
    assert "您已预约本活动：预约成功" in again
    client.post(f"/m/events/registrations/{booked.id}/cancel", data={"csrf_token": token})
    assert "已取消预约，名额已释放。" in client.get("/m/events/mine").get_data(as_text=True)


def _card(page: str, registration_id: int) -> str:
    """One registration's card on 「我的报名」."""
    start = page.index(f'<div class="card" id="reg-{registration_id}">')
    end = page.find('<div class="card"', start + 1)
    return page[start : end if end != -1 else None]


def test_a_booked_livestream_speaks_of_预约_and_offers_no_picker(client, citizen_login, db_session):
    event, (session,) = make_event(kind="livestream", quota=100)
    citizen_login("oViewer", path=f"/m/events/{event.id}")
    events.register("oViewer", event.id, session.id)
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    head = detail.split("</h1>")[1].split("<form")[0]
    assert "预约时间" in detail and "查看我的预约" in detail and "报名" not in head
    assert re.search(rf'value="{session.id}" id="s{session.id}"[^>]* disabled', detail) and "ev-submit" not in detail


def test_my_registrations_tell_a_non_follower_that_notices_need_a_follow(client, citizen_login, db_session):
    from datetime import UTC, datetime

    from models import Follower

    event, (session,) = make_event()
    citizen_login("oNotFollowing", path="/m/events/mine")
    events.register("oNotFollowing", event.id, session.id)
    assert 'id="follow-note"' in client.get("/m/events/mine").get_data(as_text=True)
    now = datetime.now(UTC)
    db.session.add(Follower(openid="oNotFollowing", subscribed=True, subscribed_at=now, first_subscribed_at=now))
    db.session.commit()
    assert 'id="follow-note"' not in client.get("/m/events/mine").get_data(as_text=True)


def test_a_follower_from_before_go_live_is_known_once_wechats_list_is_synced(
    client, citizen_login, db_session, emulator
):
    from server.services import follower_sync

    event, (session,) = make_event()
    emulator.hook("users", {"openids": ["oFollowedIn2023"]})  # followed long before this server took the account
    citizen_login("oFollowedIn2023", path="/m/events/mine")
    events.register("oFollowedIn2023", event.id, session.id)
    assert 'id="follow-note"' in client.get("/m/events/mine").get_data(as_text=True)
    follower_sync.sync_from_wechat()
    assert 'id="follow-note"' not in client.get("/m/events/mine").get_data(as_text=True)


def test_a_follower_who_scans_the_poster_is_not_told_to_follow(client, citizen_login, db_session, wechat):
    # Followed before go-live (no subscribe event here), scans the open-day poster: WeChat sends SCAN, not subscribe
    event, (session,) = make_event()
    wechat.event("oPosterFan", "SCAN", "open_day")
    citizen_login("oPosterFan", path="/m/events/mine")
    events.register("oPosterFan", event.id, session.id)
    assert 'id="follow-note"' not in client.get("/m/events/mine").get_data(as_text=True)


def test_a_session_in_another_year_says_which(client, citizen_login, db_session):
    from datetime import datetime

    from server.filters import LOCAL_TZ, local_when

    now = datetime.now(LOCAL_TZ)
    assert local_when(datetime(now.year, 7, 15, 9, 0, tzinfo=LOCAL_TZ)) == "07月15日 09:00"  # this year: no year
    next_year = datetime(now.year + 1, 7, 15, 9, 0, tzinfo=LOCAL_TZ)
    event, _ = make_event(starts_in=next_year - now)
    citizen_login("oNextYear", path=f"/m/events/{event.id}")
    assert f"{now.year + 1}年07月15日 09:00" in client.get(f"/m/events/{event.id}").get_data(as_text=True)


def test_the_event_page_marks_the_session_the_citizen_registered_for(client, citizen_login, db_session):
    # Registered for the afternoon session: coming back, the page must not show the morning one as theirs.
    event, (morning, afternoon) = make_event(quota=5, sessions=2)
    citizen_login("oCitizenA", path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": afternoon.id},
        headers={"Accept": "application/json"},
    )
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    assert "您已报名本活动" in detail
    checked = re.findall(r'<input type="radio" name="session_id" value="(\d+)"[^>]*?checked', detail)
    assert checked == [str(afternoon.id)]


def test_a_session_already_under_way_is_not_offered(client, citizen_login, db_session):
    # A visit held over several days: once the first session has begun, the page must not pick it (its places still
    # read 剩余 n) and have the citizen told 报名已截止 while the next session is open.
    event, (first, second) = make_event(quota=5, sessions=2, starts_in=timedelta(days=1))
    now = events.utcnow()
    first.starts_at, first.ends_at = now - timedelta(minutes=30), now + timedelta(hours=1)
    db.session.commit()
    citizen_login("oCitizenA", path="/m/events")
    detail = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    radios = dict(re.findall(r'<input type="radio" name="session_id" value="(\d+)"([^>]*)>', detail))
    assert "disabled" in radios[str(first.id)] and "checked" not in radios[str(first.id)]
    assert "checked" in radios[str(second.id)] and "disabled" not in radios[str(second.id)]
    assert "已开始" in detail
    res = client.post(
        f"/m/events/{event.id}/register",
        data={"csrf_token": csrf(detail), "session_id": first.id},
        headers={"Accept": "application/json"},
    )
    assert res.status_code == 400 and "该场次已开始" in res.get_json()["error"]


def test_an_events_description_keeps_the_lines_the_editor_wrote(client, citizen_login, db_session):
    event, _ = make_event()
    event.description = "活动安排：\n1. 参观指挥中心\n2. 体验执法装备"
    db.session.commit()
    citizen_login("oReader", path=f"/m/events/{event.id}")
    page = client.get(f"/m/events/{event.id}").get_data(as_text=True)
    # Before: one run-on paragraph on the phone.
    assert "<p>活动安排：</p><p>1. 参观指挥中心</p><p>2. 体验执法装备</p>" in page
