"""Menu 「活动报名」 through /wechat: open and upcoming events with their links, or a clear message when none."""

from __future__ import annotations

import re
from datetime import timedelta

from server.filters import local_dt
from server.services import events, menus
from tests.services.test_events import make_event

KEY = "EVENTS_LIST"


def _links(text: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)">', text)


def test_lists_open_then_upcoming_events_with_places_and_links(wechat, db_session):
    open_day, (session,) = make_event(quota=3, companions=0)
    live, _ = make_event(kind="livestream", quota=500, opens_in=timedelta(days=1), starts_in=timedelta(days=5))
    live.title = "直播：走进执法一线"
    events.save_event(**{f: getattr(live, f) for f in events.EVENT_FIELDS}, event=live)
    events.register("oSomeone", open_day.id, session.id)
    closed, _ = make_event(opens_in=timedelta(days=-3), starts_in=timedelta(hours=1))  # closes 1 h before now
    hidden, _ = make_event()
    hidden.published = False
    events.save_event(**{f: getattr(hidden, f) for f in events.EVENT_FIELDS}, event=hidden)

    text = wechat.event("o-menu-user", "CLICK", KEY)["Content"]

    opens = local_dt(live.registration_opens_at, "%m月%d日 %H:%M")
    assert text.startswith("近期活动报名")
    first, second = text.index("7·15 公众开放日"), text.index("直播：走进执法一线")
    assert first < second  # open for registration first, then the one still to open
    assert "报名中，剩余 2 个名额" in text and f"{opens} 开放报名，名额 500 个" in text
    assert text.count("7·15 公众开放日") == 1  # neither the closed nor the unpublished one
    links = _links(text)
    assert f"http://localhost/m/events/{open_day.id}" in links and f"http://localhost/m/events/{live.id}" in links
    assert "http://localhost/m/events/mine" in links
    assert f"/m/events/{closed.id}" not in text and f"/m/events/{hidden.id}" not in text


def test_a_full_event_offers_the_waiting_list(wechat, db_session):
    event, (session,) = make_event(quota=1, companions=0)
    events.register("oFirst", event.id, session.id)
    assert "名额已满，可报名候补" in wechat.event("o-menu-user", "CLICK", KEY)["Content"]


def test_says_so_when_nothing_is_open(wechat, db_session):
    make_event(opens_in=timedelta(days=-3), starts_in=timedelta(hours=1))  # registration already closed
    text = wechat.event("o-menu-user", "CLICK", KEY)["Content"]
    assert text.startswith("目前没有正在报名或即将开放报名的活动")
    assert _links(text) == ["http://localhost/m/events/mine"]


def test_a_long_list_stays_within_wechats_text_limit(wechat, db_session):
    for i in range(8):
        event, _ = make_event()
        event.title = f"{i}号" + "城市管理公众开放日" * 6  # 56 characters, 168 bytes
        events.save_event(**{f: getattr(event, f) for f in events.EVENT_FIELDS}, event=event)
    text = wechat.event("o-menu-user", "CLICK", KEY)["Content"]
    assert len(text.encode()) <= 2048
    shown = len(re.findall(r"\d号城市管理", text))
    assert 3 <= shown < 8 and text.rstrip().endswith("我的报名</a>") and "全部活动" in text


def test_seed_demo_puts_the_key_in_the_menu_draft(app, wechat, db_session):
    assert "seeded" in app.test_cli_runner().invoke(args=["seed-demo"]).output
    keys = [b.get("key") for b in menus.leaves(menus.draft("default").buttons)]
    assert KEY in keys and "TIP_HOWTO" in keys and "CONTACT" in keys
    # the code handler answers the key (with the seeded open day), not the default reply the seed sets
    reply = wechat.event("o-menu-user", "CLICK", KEY)["Content"]
    assert "7·15 公众开放日" in reply and "您的消息已收到" not in reply
