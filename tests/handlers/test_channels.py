"""Channel QR scenes through /wechat: SCAN gets the channel's reply, scan-to-subscribe the welcome with it; unknown
scenes are answered as before and binding QRs still bind."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from models import Follower, Staff
from server.extensions import db
from server.services import binding, channels, replies
from tests import factories

POSTER_TEXT = '7·15 开放日报名：<a href="https://example.gov.cn/m/events/1">点此报名</a>'


@pytest.fixture
def poster(db_session):
    return channels.create_channel(
        name="开放日现场海报", scene="open_day", unit_id=None, reply=channels.ReplyInput("text", text=POSTER_TEXT)
    )


def _follower(openid: str) -> Follower:
    return db.session.scalars(sa.select(Follower).filter_by(openid=openid)).one()


def test_scan_of_a_channel_qr_gets_its_reply(wechat, poster):
    assert wechat.event("o-fan", "SCAN", "open_day")["Content"] == POSTER_TEXT
    assert _follower("o-fan").last_scene == "open_day"  # still recorded as before


def test_scan_to_subscribe_gets_the_welcome_then_the_channel_text_in_one_message(wechat, poster):
    reply = wechat.event("o-new", "subscribe", "qrscene_open_day")
    assert reply["MsgType"] == "text"
    assert reply["Content"] == f"{replies.welcome_message()}\n\n{POSTER_TEXT}"
    assert _follower("o-new").source_scene == "open_day"
    assert [r.followers for r in channels.list_channels()] == [1]


def test_an_image_or_news_reply_is_sent_alone(wechat, db_session):
    articles = [{"title": "开放日", "description": "报名", "image": "", "url": "https://example.gov.cn/m/events/1"}]
    channels.create_channel(
        name="图文海报", scene="news_poster", unit_id=None, reply=channels.ReplyInput("news", articles=articles)
    )
    channels.create_channel(
        name="图片海报", scene="image_poster", unit_id=None, reply=channels.ReplyInput("image", media_id="MEDIA1")
    )
    news = wechat.event("o-a", "subscribe", "qrscene_news_poster")
    assert news["MsgType"] == "news" and news["Articles"]["item"]["Title"] == "开放日"
    assert wechat.event("o-a", "SCAN", "image_poster")["Image"]["MediaId"] == "MEDIA1"


def test_a_channel_without_a_reply_and_an_unknown_scene_are_answered_as_before(wechat, poster):
    channels.create_channel(name="无回复", scene="quiet", unit_id=None, reply=channels.ReplyInput())
    for scene in ("quiet", "never_made"):
        assert wechat.event(f"o-{scene}", "SCAN", scene) is None
        assert wechat.event(f"o-new-{scene}", "subscribe", f"qrscene_{scene}")["Content"] == replies.welcome_message()
        assert _follower(f"o-new-{scene}").source_scene == scene


def test_a_reply_edited_in_the_console_answers_the_next_scan(wechat, poster):
    channels.update_channel(poster, name=poster.name, unit_id=None, reply=channels.ReplyInput("text", text="已更新"))
    assert wechat.event("o-fan", "SCAN", "open_day")["Content"] == "已更新"


def test_scans_through_the_gateway_are_counted(wechat, poster):
    now = int(time.time())
    wechat.event("o-1", "subscribe", "qrscene_open_day", create_time=now)
    wechat.event("o-2", "SCAN", "open_day", create_time=now)
    wechat.event("o-2", "SCAN", "open_day", create_time=now)  # WeChat's retry of that delivery: once
    wechat.event("o-2", "SCAN", "open_day", create_time=now + 60)  # scanned again a minute later
    wechat.event("o-3", "SCAN", "other", create_time=now)
    [row] = channels.list_channels()
    assert (row.followers, row.scans_recent, row.scans_total) == (1, 3, 3)


def test_binding_qrs_still_bind_with_channels_around(wechat, poster, emulator):
    officer = factories.staff("zhangsan", "officer", unit=factories.unit("浦东分局"), name="张三")
    emulator.hook("users", {"openids": ["o-zhang"]})
    code = binding.issue(officer.id)
    reply = wechat.event("o-zhang", "subscribe", f"qrscene_bind_{code.token}")
    assert reply["Content"].startswith("绑定成功：张三（浦东分局）")
    assert db.session.get(Staff, officer.id, populate_existing=True).openid == "o-zhang"
    assert _follower("o-zhang").source_scene is None  # not a channel's follower
