"""Followers: subscribe bookkeeping, the console's filter parsing, search, day counts, remarks and export."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import AuditKind, AuditLog, Follower, InboundMessage
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import ServiceError
from server.services import followers as svc
from server.wechat.client import SharedTokenClient


def _event(openid: str, event: str, at: datetime) -> None:
    db.session.add(
        InboundMessage(
            dedupe_key=f"e:{openid}:{event}:{at.timestamp()}",
            openid=openid,
            msg_type="event",
            event=event,
            sent_at=at,
            received_at=at,
        )
    )
    db.session.commit()


def test_resubscribing_keeps_the_first_date_and_scene(db_session):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    svc.subscribe("o-1", t0, scene="open_day")
    svc.unsubscribe("o-1", t0 + timedelta(days=1))
    f = svc.subscribe("o-1", t0 + timedelta(days=2), scene="poster")
    assert (f.first_subscribed_at, f.subscribed_at, f.unsubscribed_at) == (t0, t0 + timedelta(days=2), None)
    assert (f.source_scene, f.last_scene) == ("open_day", "poster")


def test_events_delivered_out_of_order_are_applied_by_their_time(db_session):
    t = datetime(2026, 11, 1, 8, tzinfo=UTC)
    # sub(t1, scene a) · unsub(t2) · sub(t3, scene b) · unsub(t4), delivered as t3, t4, t1, t2
    svc.subscribe("o-late", t + timedelta(minutes=3), "b")
    svc.unsubscribe("o-late", t + timedelta(minutes=4))
    svc.subscribe("o-late", t + timedelta(minutes=1), "a")
    svc.unsubscribe("o-late", t + timedelta(minutes=2))
    f = db_session.scalars(sa.select(Follower).filter_by(openid="o-late")).one()
    assert not f.subscribed and f.unsubscribed_at == t + timedelta(minutes=4)
    assert f.first_subscribed_at == t + timedelta(minutes=1) and f.source_scene == "a"
    assert f.subscribed_at == t + timedelta(minutes=3) and f.last_scene == "b"


def test_a_scan_or_location_event_proves_a_follow_missed_here(db_session):
    t = datetime(2026, 11, 1, 8, tzinfo=UTC)
    # followed before go-live: WeChat sends SCAN only to a follower, so the first we hear of them says they follow
    f = svc.scan("o-old-fan", "open_day", t)
    assert f.subscribed and f.subscribed_at is None and f.first_subscribed_at is None  # when stays unknown
    svc.record_location("o-old-fan-2", 31.23, 121.47, None, t)
    assert db_session.scalars(sa.select(Follower.subscribed).filter_by(openid="o-old-fan-2")).one()
    # an unsubscribe later than the scan (delivered first) stands; an earlier one is overruled by the scan
    svc.unsubscribe("o-left", t + timedelta(minutes=5))
    assert not svc.scan("o-left", "open_day", t).subscribed
    assert svc.scan("o-left", "open_day", t + timedelta(minutes=9)).subscribed


def test_parse_filter_keeps_what_it_understands():
    f, errors = svc.parse_filter(
        {"openid": " oAb\x00 ", "status": "maybe", "since": "2026-03-09", "until": "2026-03-01", "by": "first"}
    )
    assert f.openid == "oAb" and f.status == "" and f.by == "first"
    assert (f.since, f.until) == (date(2026, 3, 1), date(2026, 3, 9))
    assert errors == ["开始日期晚于结束日期，已对调"]
    f, errors = svc.parse_filter({"since": "3月1日", "until": "1900-01-01"})
    assert f.since is None and f.until is None and len(errors) == 2
    assert svc.parse_filter({})[0].as_dict() == {}


def test_search_orders_newest_first_and_clamps_the_page(db_session):
    svc.scan("o-scanned-only", "qr_x")  # known from a scan, never subscribed: no subscribe date
    for i in range(3):
        svc.subscribe(f"o-{i}", datetime(2026, 1, 1 + i, tzinfo=UTC))
    page = svc.search(svc.FollowerFilter(), page=10**9)
    assert page.page == 1 and page.pages == 1 and page.total == 4
    assert [r.follower.openid for r in page.rows] == ["o-2", "o-1", "o-0", "o-scanned-only"]


def test_last_active_is_the_latest_log_row_of_each_follower(db_session):
    svc.subscribe("o-a", datetime(2026, 1, 1, tzinfo=UTC))
    svc.subscribe("o-b", datetime(2026, 1, 1, tzinfo=UTC))
    _event("o-a", "subscribe", datetime(2026, 1, 1, tzinfo=UTC))
    _event("o-a", "location", datetime(2026, 1, 3, tzinfo=UTC))
    _event("o-other", "subscribe", datetime(2026, 2, 1, tzinfo=UTC))  # someone else's activity
    rows = {r.follower.openid: r.last_active for r in svc.search(svc.FollowerFilter()).rows}
    assert rows == {"o-a": datetime(2026, 1, 3, tzinfo=UTC), "o-b": None}
    assert svc.last_active("o-a") == datetime(2026, 1, 3, tzinfo=UTC)


def test_daily_changes_bucket_by_shanghai_day(db_session):
    today = datetime.now(LOCAL_TZ).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=LOCAL_TZ)
    _event("o-1", "subscribe", midnight)  # today, at 00:00 local
    _event("o-2", "subscribe", midnight - timedelta(minutes=1))  # yesterday, 23:59 local
    _event("o-2", "unsubscribe", midnight + timedelta(minutes=1))
    _event("o-3", "subscribe", midnight - timedelta(days=40))  # outside the window
    _event("o-4", "scan", midnight)  # not a subscription
    days = svc.daily_changes(30)
    assert len(days) == 30 and days[-1][0] == today
    assert days[-1][1:] == (1, 1) and days[-2][1:] == (1, 0)
    assert sum(n for _, n, _ in days) == 2


def test_remark_is_checked_in_bytes_before_any_call(db_session, emulator):
    f = svc.subscribe("o-r", datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ServiceError, match="现在是 33 个字节"):
        svc.set_remark(f, "备" * 11)
    calls = lambda: emulator.state()["call_counts"].get("cgi-bin/user/info/updateremark", 0)  # noqa: E731
    assert calls() == 0
    emulator.hook("users", {"openids": ["o-r"]})
    svc.set_remark(f, "备" * 10)
    assert calls() == 1 and f.remark == "备" * 10


def test_clearing_a_remark_clears_it_in_wechat(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": "o-r", "remark": "老备注"}]})
    f = svc.subscribe("o-r", datetime(2026, 1, 1, tzinfo=UTC))
    f.remark = "老备注"
    db.session.commit()
    svc.set_remark(f, "")
    assert f.remark is None
    assert next(u for u in emulator.state()["users"] if u["openid"] == "o-r")["remark"] == ""


def test_a_refused_remark_says_why_and_changes_nothing(db_session, emulator):
    f = svc.subscribe("o-r", datetime(2026, 1, 1, tzinfo=UTC))
    emulator.hook("users", {"openids": ["o-r"]})
    emulator.hook("fail", {"path": "cgi-bin/user/info/updateremark", "errcode": 40092})
    with pytest.raises(ServiceError) as caught:
        svc.set_remark(f, "新备注")
    assert str(caught.value) == "备注未保存：40092 备注名不符合微信的要求：最长 30 个字节（约 10 个汉字）"
    assert f"{svc.REMARK_MAX_BYTES} 个字节" in str(caught.value)  # the shared text states our limit
    gateway = {"status": 502, "body": "<html>502</html>", "content_type": "text/html", "work": False}
    emulator.hook("garble", {"path": "cgi-bin/user/info/updateremark"} | gateway)
    with pytest.raises(ServiceError) as caught:
        svc.set_remark(f, "新备注")
    assert str(caught.value) == "备注未保存：微信服务器暂时出错（HTTP 502），请稍后再试"  # was "错误码 None"
    db.session.expire_all()
    assert db.session.get(Follower, f.id).remark is None


def test_an_unreachable_wechat_leaves_the_remark_alone(app, db_session, redis_client, monkeypatch):
    f = svc.subscribe("o-r", datetime(2026, 1, 1, tzinfo=UTC))
    dead = SharedTokenClient("wxdead", "secret", base="http://127.0.0.1:9/", redis=redis_client, timeout=1)
    monkeypatch.setitem(app.extensions, "wechat_client", dead)  # the real client, pointed at a closed port
    with pytest.raises(ServiceError, match=r"^备注未保存：无法连接微信服务器，请稍后再试$"):
        svc.set_remark(f, "新备注")
    db.session.expire_all()
    assert db.session.get(Follower, f.id).remark is None


def test_export_is_audited_before_the_first_row(db_session):
    svc.subscribe("o-e1", datetime(2026, 1, 1, tzinfo=UTC))
    svc.subscribe("o-e2", datetime(2026, 1, 2, tzinfo=UTC))
    chunks = svc.export_csv(svc.FollowerFilter(status="subscribed"))
    entry = db.session.scalars(sa.select(AuditLog).filter_by(action="follower.export")).one()
    assert entry.kind is AuditKind.EXPORT and entry.after == {"filter": {"status": "subscribed"}, "rows": 2}
    text = "".join(chunks)
    assert text.startswith("\ufeffopenid,") and text.index("o-e2") < text.index("o-e1")
    assert "2026-01-02 08:00:00" in text  # local time


@pytest.mark.parametrize("value", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx"])
def test_export_cells_never_start_a_formula(value):
    assert svc._cell(value).startswith("'")
