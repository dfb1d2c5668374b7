"""Datacube sync against the emulator's deterministic data: each day once, resumable, within WeChat's limits."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from wechatpy.exceptions import WeChatClientException

from models import DatacubeDay, DatacubeSyncState, InboundMessage, StatArticle, StatArticleDaily, StatDaily
from server.services import datacube
from server.wechat import emulator as emu
from server.wechat.client import SharedTokenClient
from server.wechat.emulator import DATACUBE

TODAY = date(2026, 1, 1)  # yesterday is 2025-12-31: a backfill from 2025-01-01 is one whole year
YEAR = [date(2025, 1, 1) + timedelta(days=i) for i in range(365)]


@pytest.fixture
def cube(db_session, emulator):
    emulator.hook("today", {"date": TODAY.isoformat()})
    return emulator


def _calls(emulator) -> list[dict]:
    calls = emulator._http.get(emulator.url + "_emulator/calls", timeout=5).json()
    return [c for c in calls if c["path"].startswith("datacube/")]


def _snapshot() -> dict[str, list]:
    return {
        "daily": [tuple(r) for r in db_session_rows(StatDaily)],
        "articles": [tuple(r) for r in db_session_rows(StatArticle)],
        "article_daily": [tuple(r) for r in db_session_rows(StatArticleDaily)],
        "days": db_session_query(
            sa.select(DatacubeDay.endpoint, DatacubeDay.ref_date, DatacubeDay.is_delay, DatacubeDay.source).order_by(
                DatacubeDay.endpoint, DatacubeDay.ref_date
            )
        ),
    }


def db_session_rows(model) -> list:
    from server.extensions import db

    table = model.__table__
    return db.session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()


def db_session_query(query) -> list:
    from server.extensions import db

    return [tuple(r) for r in db.session.execute(query).all()]


def test_year_backfill_lands_each_day_once_and_rerun_changes_nothing(cube, db_session):
    results = datacube.backfill(YEAR[0], today=TODAY)
    assert not any(r.skipped for r in results)

    # Every endpoint recorded each day of the year exactly once.
    per_endpoint = dict(
        db_session.execute(sa.select(DatacubeDay.endpoint, sa.func.count()).group_by(DatacubeDay.endpoint)).all()
    )
    assert per_endpoint == dict.fromkeys(datacube.ENDPOINTS, 365)
    # The figures are WeChat's (the emulator's pure functions), day by day.
    daily = {r.ref_date: r for r in db_session.scalars(sa.select(StatDaily))}
    assert sorted(daily) == YEAR
    for day in YEAR:
        summary = emu.datacube_user_summary(day)
        assert daily[day].cumulate_user == emu.datacube_user_cumulate(day)
        assert daily[day].new_user == sum(r["new_user"] for r in summary)
        assert daily[day].cancel_user == sum(r["cancel_user"] for r in summary)
    # Reads: the newer getbizsummary from its first day (2025-11-01), the older getuserread before it.
    nov = date(2025, 11, 20)
    biz = emu.datacube_rows("getbizsummary", nov, yesterday=TODAY - timedelta(days=1))[0]["detail"]
    assert daily[nov].read_user == biz["read_user"] and daily[nov].like_user == biz["like_user"]
    mar = date(2025, 3, 3)
    old = next(r for r in emu.datacube_rows("getuserread", mar, yesterday=TODAY) if r["user_source"] == 99999999)
    assert daily[mar].read_user == old["int_page_read_user"]
    assert db_session.scalar(sa.select(DatacubeDay.source).filter_by(endpoint="getbizsummary", ref_date=mar)) == (
        "getuserread"
    )
    # Articles: one row per published article, its cumulative reads as of the last day WeChat reported.
    published = [a for day in YEAR for a in emu.datacube_articles(day)]
    stored = {a.msgid: a for a in db_session.scalars(sa.select(StatArticle))}
    assert set(stored) == {a["msgid"] for a in published}
    late = next(a for a in published if a["publish_date"] >= "2025-12-01")
    detail = emu.datacube_rows("getarticletotaldetail", date.fromisoformat(late["publish_date"]), yesterday=YEAR[-1])
    last = next(r for r in detail if r["msgid"] == late["msgid"])["detail_list"][-1]
    assert stored[late["msgid"]].read_user == last["read_user"]
    early = next(a for a in published if a["publish_date"] < "2025-10-01")
    assert stored[early["msgid"]].title == early["title"]  # the older getarticletotal carries titles

    # WeChat's limits held on every call: span per endpoint, nothing after yesterday, nothing before the epoch.
    calls = _calls(cube)
    assert calls and all(c["errcode"] == 0 for c in calls)
    for c in calls:
        name = c["path"].removeprefix("datacube/")
        begin, end = date.fromisoformat(c["body"]["begin_date"]), date.fromisoformat(c["body"]["end_date"])
        assert (end - begin).days + 1 <= DATACUBE[name][0]
        assert YEAR[0] <= begin <= end <= YEAR[-1]

    before = _snapshot()
    cube.hook("clear-calls")
    datacube.backfill(YEAR[0], today=TODAY)
    assert _snapshot() == before
    again = _calls(cube)
    # Only the refresh window of the still-growing cumulative article figures is asked again.
    assert {c["path"] for c in again} <= {"datacube/getarticletotaldetail", "datacube/getarticletotal"}
    assert len({c["body"]["begin_date"] for c in again}) == 7


def test_interrupted_backfill_resumes_where_it_stopped(cube, db_session, monkeypatch):
    real_call = datacube._call
    calls: list[tuple[str, date, date]] = []
    armed = {"at": 20}

    def call(name, begin, end):
        calls.append((name, begin, end))
        if len(calls) == armed["at"]:  # the emulator's fail hook: WeChat errs in the middle of the backfill
            cube.hook("fail", {"path": f"datacube/{name}", "errcode": -1, "times": 1})
        return real_call(name, begin, end)

    monkeypatch.setattr(datacube, "_call", call)
    with pytest.raises(WeChatClientException):
        datacube.sync_endpoint("getusercumulate", start=YEAR[0], today=TODAY)
    stored = db_session.scalar(
        sa.select(sa.func.count()).select_from(DatacubeDay).filter_by(endpoint="getusercumulate")
    )
    assert stored == 19 * 7  # the 19 chunks before the failure were committed
    state = db_session.get(DatacubeSyncState, "getusercumulate")
    assert state.cursor == YEAR[0] + timedelta(days=19 * 7 - 1)
    assert state.last_error and "微信系统繁忙" in state.last_error  # in Chinese, for the sync page

    calls.clear()
    armed["at"] = 0
    datacube.sync_endpoint("getusercumulate", start=YEAR[0], today=TODAY)
    assert calls[0][1] == YEAR[0] + timedelta(days=19 * 7)  # resumed at the first missing day
    days = db_session.scalars(sa.select(DatacubeDay.ref_date).filter_by(endpoint="getusercumulate")).all()
    assert sorted(days) == YEAR
    cumulate = dict(db_session.execute(sa.select(StatDaily.ref_date, StatDaily.cumulate_user)).all())
    assert all(cumulate[d] == emu.datacube_user_cumulate(d) for d in YEAR)
    assert db_session.get(DatacubeSyncState, "getusercumulate").last_error is None


def test_a_second_worker_finds_the_lock_and_fetches_nothing(cube, db_session, redis_client):
    redis_client.set("stats:datacube:getusercumulate", "other-worker", ex=60)
    result = datacube.sync_endpoint("getusercumulate", start=YEAR[0], today=TODAY)
    assert result.skipped and result.calls == 0
    assert db_session.scalar(sa.select(sa.func.count()).select_from(DatacubeDay)) == 0
    assert redis_client.get("stats:datacube:getusercumulate") == b"other-worker"  # not ours to release


def test_delayed_days_are_fetched_again_until_final(cube, db_session, monkeypatch):
    real_call = datacube._call
    delayed = {"on": True}

    def call(name, begin, end):
        answer = real_call(name, begin, end)
        if name == "getbizsummary" and delayed["on"]:
            answer["is_delay"] = True
        return answer

    monkeypatch.setattr(datacube, "_call", call)
    start = date(2025, 12, 20)
    datacube.sync_endpoint("getbizsummary", start=start, today=TODAY)
    assert db_session.scalars(sa.select(DatacubeDay.is_delay).filter_by(endpoint="getbizsummary")).all() == [True] * 12
    assert datacube.wanted_days("getbizsummary", today=TODAY)[0] == start
    delayed["on"] = False
    result = datacube.sync_endpoint("getbizsummary", today=TODAY)
    assert result.fetched_days == 12
    assert not any(db_session.scalars(sa.select(DatacubeDay.is_delay).filter_by(endpoint="getbizsummary")))
    assert datacube.wanted_days("getbizsummary", today=TODAY) == []


def test_yesterday_not_published_yet_is_retried(cube, db_session, monkeypatch):
    real_call = datacube._call

    def call(name, begin, end):
        answer = real_call(name, begin, end)
        answer["list"] = [r for r in answer["list"] if r["ref_date"] != "2025-12-31"]  # before ~10:00 Beijing
        return answer

    monkeypatch.setattr(datacube, "_call", call)
    with pytest.raises(datacube.DatacubeNotReady):
        datacube.sync_endpoint("getusercumulate", start=date(2025, 12, 25), today=TODAY)
    # The summary waits for the cumulate: it does not record a day WeChat has not published.
    datacube.sync_endpoint("getusersummary", start=date(2025, 12, 25), today=TODAY)
    summary_days = db_session.scalars(sa.select(DatacubeDay.ref_date).filter_by(endpoint="getusersummary")).all()
    assert max(summary_days) == date(2025, 12, 30)
    monkeypatch.setattr(datacube, "_call", real_call)
    datacube.sync_endpoint("getusercumulate", today=TODAY)
    datacube.sync_endpoint("getusersummary", today=TODAY)
    assert db_session.get(StatDaily, date(2025, 12, 31)).cumulate_user == emu.datacube_user_cumulate(date(2025, 12, 31))
    assert db_session.get(StatDaily, date(2025, 12, 31)).new_user is not None


def test_backfill_never_asks_before_2014_12_01(cube, db_session):
    cube.hook("today", {"date": "2014-12-05"})
    datacube.sync_endpoint("getusercumulate", start=date(2014, 1, 1), today=date(2014, 12, 5))
    days = db_session.scalars(sa.select(DatacubeDay.ref_date).order_by(DatacubeDay.ref_date)).all()
    assert days == [date(2014, 12, 1) + timedelta(days=i) for i in range(4)]


def test_series_by_week_and_month_aggregates_in_sql(cube, db_session):
    datacube.sync_endpoint("getusercumulate", start=date(2025, 12, 1), today=TODAY)
    datacube.sync_endpoint("getusersummary", start=date(2025, 12, 1), today=TODAY)
    months = datacube.series(date(2025, 12, 1), date(2025, 12, 31), "month")
    assert len(months) == 1
    dec = [date(2025, 12, d) for d in range(1, 32)]
    assert months[0]["followers"] == emu.datacube_user_cumulate(date(2025, 12, 31))
    assert months[0]["new"] == sum(r["new_user"] for d in dec for r in emu.datacube_user_summary(d))
    weeks = datacube.series(date(2025, 12, 1), date(2025, 12, 31), "week")
    assert weeks[0]["bucket"] == date(2025, 12, 1)  # a Monday
    assert weeks[1]["followers"] == emu.datacube_user_cumulate(date(2025, 12, 14))  # the week's last day


def _event(openid: str, event: str, key: str | None, at: datetime, n: int) -> InboundMessage:
    return InboundMessage(
        dedupe_key=f"e:{openid}:{event}:{n}",
        openid=openid,
        msg_type="event",
        event=event,
        event_key=key,
        payload={},
        sent_at=at,
        received_at=at,
    )


def test_own_follow_events_by_day_and_scene(db_session):
    from zoneinfo import ZoneInfo

    bj = ZoneInfo("Asia/Shanghai")
    rows = [
        _event("o1", "subscribe", "qrscene_open_day", datetime(2026, 3, 1, 0, 30, tzinfo=bj), 1),  # 1 Mar Beijing
        _event("o2", "subscribe", "qrscene_open_day", datetime(2026, 3, 1, 23, 30, tzinfo=bj), 2),
        _event("o3", "subscribe", None, datetime(2026, 3, 2, 9, 0, tzinfo=bj), 3),
        _event("o1", "scan", "open_day", datetime(2026, 3, 2, 10, 0, tzinfo=bj), 4),
        _event("o3", "unsubscribe", None, datetime(2026, 3, 2, 11, 0, tzinfo=bj), 5),
        _event("o4", "subscribe", "qrscene_x", datetime(2026, 3, 3, 0, 0, tzinfo=bj), 6),  # outside the range
    ]
    db_session.add_all(rows)
    db_session.commit()
    by_day = datacube.own_events_by_day(date(2026, 3, 1), date(2026, 3, 2))
    assert by_day == [
        {"day": date(2026, 3, 1), "subscribe": 2, "unsubscribe": 0, "scan": 0},
        {"day": date(2026, 3, 2), "subscribe": 1, "unsubscribe": 1, "scan": 1},
    ]
    scenes = {
        s["scene"]: (s["subscribe"], s["scan"])
        for s in datacube.own_events_by_scene(date(2026, 3, 1), date(2026, 3, 2))
    }
    assert scenes == {"open_day": (2, 1), "（无场景：搜索、名片等）": (1, 0)}


def test_a_refusal_no_retry_can_change_is_kept_not_retried(cube, db_session):
    from server.tasks import stats as stats_tasks

    cube.hook("fail", {"path": "datacube/getusercumulate", "errcode": 48001, "errmsg": "api unauthorized", "times": 99})
    start = (datacube.beijing_today() - timedelta(days=3)).isoformat()
    stats_tasks.sync_datacube_endpoint.delay("getusercumulate", start)  # eager: a retry would run again right here
    assert len([c for c in _calls(cube) if c["path"] == "datacube/getusercumulate"]) == 1
    state = db_session.get(DatacubeSyncState, "getusercumulate", populate_existing=True)
    assert "48001" in state.last_error and "公众号没有此接口的权限" in state.last_error  # as editors read it


def test_no_connection_and_a_malformed_answer_read_apart_on_the_sync_page(
    app, cube, db_session, redis_client, monkeypatch
):
    start = TODAY - timedelta(days=3)
    odd = {"path": "datacube/getusercumulate", "body": '{"list": [1]}', "content_type": "application/json"}
    cube.hook("garble", odd)  # JSON, but not of the shape WeChat answers with: a bug of ours or a change of theirs
    with pytest.raises(TypeError):
        datacube.sync_endpoint("getusercumulate", start=start, today=TODAY)
    state = db_session.get(DatacubeSyncState, "getusercumulate", populate_existing=True)
    assert state.last_error == f"{start}–{TODAY - timedelta(days=1)}：意外错误：TypeError"  # not "无法连接"
    dead = SharedTokenClient("wxdead", "secret", base="http://127.0.0.1:9/", redis=redis_client, timeout=1)
    monkeypatch.setitem(app.extensions, "wechat_client", dead)  # the real client, pointed at a closed port
    with pytest.raises(requests.ConnectionError):
        datacube.sync_endpoint("getusercumulate", start=start, today=TODAY)
    state = db_session.get(DatacubeSyncState, "getusercumulate", populate_existing=True)
    assert state.last_error == f"{start}–{TODAY - timedelta(days=1)}：无法连接微信服务器，请稍后再试"


def test_a_refused_date_range_does_not_hold_back_the_days_after_it(cube, db_session):
    cube.hook("fail", {"path": "datacube/getusercumulate", "errcode": 61501, "errmsg": "date range error", "times": 1})
    start = TODAY - timedelta(days=21)  # three chunks of seven days
    datacube.sync_endpoint("getusercumulate", start=start, today=TODAY)
    days = set(db_session.scalars(sa.select(DatacubeDay.ref_date).filter_by(endpoint="getusercumulate")))
    assert start not in days and sorted(days) == [TODAY - timedelta(days=d) for d in range(14, 0, -1)]
    state = db_session.get(DatacubeSyncState, "getusercumulate", populate_existing=True)
    assert state.last_error.startswith(f"被拒绝：{start}–") and "61501 微信不接受这个日期范围" in state.last_error


def test_articles_without_a_title_are_named_from_ours_then_from_wechats_list(cube, db_session):
    from server.services import articles
    from tests import factories

    datacube.backfill(date(2025, 12, 1), today=TODAY)  # the newer endpoint only: no titles
    december = [a for d in range(31) for a in emu.datacube_articles(date(2025, 12, 1) + timedelta(days=d))]
    stored = {a.msgid: a for a in db_session.scalars(sa.select(StatArticle))}
    assert {a["msgid"] for a in december} <= set(stored) and not any(stored[a["msgid"]].title for a in december)
    ours = december[-1]
    mid, idx = ours["msgid"].split("_")
    article = articles.save_article(factories.staff("ed1", "editor"), title="本系统发布的标题", body_html="<p>x</p>")
    article.url = f"https://mp.weixin.qq.com/s?__biz=MzA&mid={mid}&idx={idx}&sn=abc"
    db_session.commit()

    assert datacube.fill_titles() == len(december)
    db_session.expire_all()
    titles = {a.msgid: a.title for a in db_session.scalars(sa.select(StatArticle))}
    assert titles[ours["msgid"]] == "本系统发布的标题"
    assert all(titles[a["msgid"]] == a["title"] for a in december if a is not ours)
    assert datacube.fill_titles() == 0  # nothing left to name: no call

    # One WeChat never lists (a 群发 article, say): the pages stop at its day, not after all of history.
    db_session.add(StatArticle(msgid="999_1", publish_date=date(2025, 12, 20), stat_date=date(2025, 12, 21)))
    db_session.commit()
    cube.hook("clear-calls")
    assert datacube.fill_titles() == 0
    calls = cube._http.get(cube.url + "_emulator/calls", timeout=5).json()
    assert 1 <= len([c for c in calls if c["path"] == "cgi-bin/freepublish/batchget"]) <= 2
