"""Chat through /wechat while Redis is down: PostgreSQL alone still decides, nothing answers with the default reply.

Redis is a real client on a closed port (the `redis_down` fixture), as when the server stops or restarts.
"""

from __future__ import annotations

import sqlalchemy as sa

from models import MaterialItem, Tip, TipSource
from server.extensions import db
from server.services import chat, replies
from tests.handlers.test_materials import OFFICER, _officer
from tests.handlers.test_tips import media as media  # noqa: F401  (a fixture, shared)
from tests.handlers.test_tips import send_image, send_location
from tests.services.test_images import jpeg_bytes

CITIZEN = "o-chat-citizen-no-redis"


def test_a_keyword_is_answered_while_redis_is_down(wechat, db_session, redis_down):
    replies.save_rule(
        name="开放日", match_type="exact", pattern="开放日", reply_text="7·15 开放日报名请点菜单「活动报名」。"
    )
    assert wechat.text(CITIZEN, "开放日")["Content"] == "7·15 开放日报名请点菜单「活动报名」。"


def test_a_tip_is_assembled_in_chat_while_redis_is_down(wechat, media, db_session, redis_down):
    assert "已收到照片" in send_image(wechat, CITIZEN, media(jpeg_bytes()))
    assert "已收到第 2 张照片" in send_image(wechat, CITIZEN, media(jpeg_bytes(colour="blue")))
    assert "已收到位置：人民广场" in send_location(wechat, CITIZEN)
    reply = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")["Content"]
    [tip] = db.session.scalars(sa.select(Tip)).all()
    assert reply.startswith(f"线索已提交，编号 {tip.display_no}（2 张照片）")
    assert tip.source is TipSource.CHAT and tip.address == "人民广场"


def test_an_officers_photos_get_their_caption_while_redis_is_down(wechat, media, db_session, redis_down):
    _officer()
    assert send_image(wechat, OFFICER, media(jpeg_bytes())).startswith("已收到 1 张现场照片")
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue"))).startswith("已收到 2 张现场照片")
    assert "2 张照片记录位置：南京东路" in send_location(wechat, OFFICER, 31.2365, 121.4835, "南京东路")
    assert "2 张照片添加说明" in wechat.text(OFFICER, "南京东路占道经营整治现场")["Content"]
    items = db.session.scalars(sa.select(MaterialItem)).all()
    assert [i.caption for i in items] == ["南京东路占道经营整治现场"] * 2


# Redis restarted without its data (no persistence) or flushed: it answers, but the chat flows' pointers are gone.


def test_a_tip_under_way_continues_after_redis_lost_its_data(wechat, media, db_session, redis_client):
    assert "已收到照片" in send_image(wechat, CITIZEN, media(jpeg_bytes()))
    redis_client.flushdb()
    assert "已收到位置：人民广场" in send_location(wechat, CITIZEN)
    redis_client.flushdb()
    reply = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")["Content"]
    [tip] = db.session.scalars(sa.select(Tip)).all()
    assert reply.startswith(f"线索已提交，编号 {tip.display_no}（1 张照片）") and tip.address == "人民广场"


def test_an_officers_burst_keeps_its_caption_after_redis_lost_its_data(wechat, media, db_session, redis_client):
    _officer()
    assert send_image(wechat, OFFICER, media(jpeg_bytes())).startswith("已收到 1 张现场照片")
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue"))).startswith("已收到 2 张现场照片")
    redis_client.flushdb()
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="green"))).startswith("已收到 3 张现场照片")
    redis_client.flushdb()
    assert "3 张照片添加说明" in wechat.text(OFFICER, "南京东路占道经营整治现场")["Content"]
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="red"))).startswith("已收到 1 张现场照片")  # the next


def test_an_officers_next_scene_gets_its_own_caption_while_redis_is_down(wechat, media, db_session, redis_down):
    _officer()
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    assert "1 张照片添加说明" in wechat.text(OFFICER, "南京东路占道经营")["Content"]
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue"))).startswith("已收到 1 张现场照片")
    assert "1 张照片添加说明" in wechat.text(OFFICER, "福州路乱堆物料")["Content"]
    items = db.session.scalars(sa.select(MaterialItem).order_by(MaterialItem.id)).all()
    assert [i.caption for i in items] == ["南京东路占道经营", "福州路乱堆物料"]


# Redis down for a while, then back with the data it had (a restart with persistence, a network cut): the flows that
# changed meanwhile have no pointer, or a stale one, while the marker says the pointers were rebuilt.


def _use(app, monkeypatch, client) -> None:
    """Redis goes down (the dead client) or comes back (the live one, with its data); the WeChat client keeps its
    token in Redis, so one built on the other must not be reused."""
    monkeypatch.setitem(app.extensions, "redis", client)
    monkeypatch.setitem(app.extensions, "wechat_client", None)


def test_a_tip_opened_while_redis_was_down_continues_when_it_is_back(
    app, wechat, media, db_session, redis_client, redis_down, monkeypatch
):
    _use(app, monkeypatch, redis_client)  # up: the marker is set by the first text
    wechat.text("o-someone-else", "你好")
    assert redis_client.get(chat.POINTERS_KEY) is not None
    _use(app, monkeypatch, redis_down)
    assert "已收到照片" in send_image(wechat, CITIZEN, media(jpeg_bytes()))  # the draft's pointer cannot be written
    _use(app, monkeypatch, redis_client)  # back, with the marker it had
    assert "已收到位置：人民广场" in send_location(wechat, CITIZEN)
    reply = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")["Content"]
    [tip] = db.session.scalars(sa.select(Tip)).all()
    assert reply.startswith(f"线索已提交，编号 {tip.display_no}（1 张照片）")


def test_an_officers_burst_sent_while_redis_was_down_gets_its_caption_when_it_is_back(
    app, wechat, media, db_session, redis_client, redis_down, monkeypatch
):
    _officer()
    _use(app, monkeypatch, redis_client)
    wechat.text("o-someone-else", "你好")
    _use(app, monkeypatch, redis_down)
    assert send_image(wechat, OFFICER, media(jpeg_bytes())).startswith("已收到 1 张现场照片")
    _use(app, monkeypatch, redis_client)
    assert "1 张照片添加说明" in wechat.text(OFFICER, "南京东路占道经营整治现场")["Content"]
