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
