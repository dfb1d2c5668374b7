"""An officer's conversation through /wechat: photos, then a location and a caption, become material items."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import MaterialItem, MaterialState, Tip, TipDraft
from server.extensions import db, get_redis
from server.services import images, materials
from tests import factories
from tests.handlers.test_tips import media as media  # noqa: F401  (a fixture, shared)
from tests.handlers.test_tips import send_image, send_location
from tests.services.test_images import exif_of, jpeg_bytes

OFFICER = "o-officer-li"


def _officer():
    officer = factories.staff("lisi", "officer", unit=factories.unit("黄浦分局"), name="李四")
    officer.openid = OFFICER
    db.session.commit()
    return officer


def _items() -> list[MaterialItem]:
    return list(db.session.scalars(sa.select(MaterialItem).order_by(MaterialItem.id)))


def test_the_caption_reply_counts_only_the_photos_kept_and_says_why_the_others_are_not(wechat, media, db_session):
    _officer()
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    send_image(wechat, OFFICER, media(b"\xff\xd8\xff\xe0 not a photo"))
    send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue", size=(80, 40))))
    reply = wechat.text(OFFICER, "沿街晾晒整治")["Content"]
    assert reply.startswith("已为 2 张照片（另有 1 张未能存入素材库：文件不是有效的图片")
    assert "请重新发送）添加说明：「沿街晾晒整治」" in reply
    assert "已为 2 张照片（另有 1 张" in send_location(wechat, OFFICER, 31.2365, 121.4835, "南京东路")


def test_a_caption_for_photos_none_of_which_was_kept_says_it_was_not_saved(wechat, media, db_session):
    """It said 「已为 0 张照片（另有 1 张未能存入素材库…）添加说明」 and that later texts would be added to it."""
    _officer()
    send_image(wechat, OFFICER, media(b"\xff\xd8\xff\xe0 not a photo"))
    reply = wechat.text(OFFICER, "沿街晾晒整治")["Content"]
    assert reply.startswith("刚发送的 1 张照片未能存入素材库（文件不是有效的图片")
    assert "说明「沿街晾晒整治」没有保存，请重新发送照片后再发送说明。" in reply and "0 张" not in reply
    reply = send_location(wechat, OFFICER, 31.2365, 121.4835, "南京东路")
    assert reply.startswith("刚发送的 1 张照片未能存入素材库") and reply.endswith(
        "位置没有保存，请重新发送照片后再发送位置。"
    )


def test_a_chat_caption_leaves_the_photos_from_the_upload_page_alone(wechat, media, db_session):
    officer = _officer()
    page, _ = materials.upload_photo(officer, jpeg_bytes(colour="red"), client_id="page-photo-1", caption="页面说明")
    send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue", size=(80, 40))))
    assert "已为 1 张照片添加说明" in wechat.text(OFFICER, "沿街晾晒整治")["Content"]
    assert "已为 1 张照片记录位置" in send_location(wechat, OFFICER, 31.2365, 121.4835, "南京东路")
    db.session.refresh(page)
    assert (page.caption, page.latitude) == ("页面说明", None)


def test_officer_photos_then_location_and_caption_become_items(wechat, media, db_session):
    officer = _officer()
    assert send_image(wechat, OFFICER, media(jpeg_bytes(gps=True))).startswith("已收到 1 张现场照片")
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue", size=(80, 40)))).startswith("已收到 2 张")
    assert "2 张照片记录位置：南京东路" in send_location(wechat, OFFICER, 31.2365, 121.4835, "南京东路")
    assert (
        "2 张照片添加说明：「南京东路占道经营整治现场」" in wechat.text(OFFICER, "南京东路占道经营整治现场")["Content"]
    )
    items = _items()
    assert len(items) == 2
    for item in items:
        assert item.state is MaterialState.READY  # downloaded through media/get by the (eager) task
        assert item.uploader_id == officer.id and item.unit.name == "黄浦分局"
        assert (item.latitude, item.longitude, item.address) == (31.2365, 121.4835, "南京东路")
        assert item.caption == "南京东路占道经营整治现场"
        assert not exif_of(images.media_path(item.public_path).read_bytes()).get_ifd(0x8825)
        assert item.phash and item.group_id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipDraft)) == 0


def test_the_next_scene_within_minutes_gets_its_own_caption_and_place(wechat, media, db_session):
    """An officer on patrol: photos, a place and a text at one scene, then the next scene a minute later. The second
    caption and place went to every photo since the first of the burst (the first scene's photo ended up with both
    captions and the second scene's place), and the first scene's refused photo was reported again."""
    _officer()
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    send_image(wechat, OFFICER, media(b"\xff\xd8\xff\xe0 not a photo"))
    assert "已为 1 张照片（另有 1 张未能存入" in send_location(wechat, OFFICER, 31.2365, 121.4835, "南京东路")
    assert "已为 1 张照片（另有 1 张未能存入" in wechat.text(OFFICER, "占道经营")["Content"]
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue", size=(80, 40)))).startswith("已收到 1 张")
    assert send_image(wechat, OFFICER, media(jpeg_bytes(colour="red", size=(80, 40)))).startswith("已收到 2 张")
    assert wechat.text(OFFICER, "乱堆物料")["Content"].startswith("已为 2 张照片添加说明：「乱堆物料」")
    assert send_location(wechat, OFFICER, 31.2301, 121.4801, "福州路").startswith("已为 2 张照片记录位置：福州路")
    assert wechat.text(OFFICER, "已清理")["Content"].startswith("已为 2 张照片添加说明")  # the same two photos
    first, refused, *second = _items()
    assert (first.caption, first.address) == ("占道经营", "南京东路")
    assert refused.state is MaterialState.FAILED
    assert [(i.caption, i.address) for i in second] == [("乱堆物料 已清理", "福州路")] * 2


def test_the_same_message_delivered_twice_is_one_item(wechat, media, db_session):
    _officer()
    media_id = media(jpeg_bytes())
    send_image(wechat, OFFICER, media_id)
    wechat.send(OFFICER, "image", {"PicUrl": "http://example.invalid/x", "MediaId": media_id})  # new MsgId, same media
    assert len(_items()) == 1


def test_a_citizen_photo_stays_a_tip_and_an_expired_media_fails_quietly(wechat, media, db_session):
    assert "随手拍" in send_image(wechat, "o-citizen-x", media(jpeg_bytes()))
    assert _items() == [] and db.session.scalar(sa.select(sa.func.count()).select_from(TipDraft)) == 1
    _officer()
    assert send_image(wechat, OFFICER, "no-such-media").startswith("已收到 1 张")
    [item] = _items()
    assert item.state is MaterialState.FAILED and "过期" in item.error
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0


def test_text_without_a_burst_is_an_ordinary_message(wechat, db_session):
    _officer()
    reply = wechat.text(OFFICER, "你好")
    assert "添加说明" not in (reply or {}).get("Content", "")


def test_a_photo_sent_again_is_not_asked_for_again_and_its_caption_reaches_the_library(wechat, media, db_session):
    _officer()
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    send_image(wechat, OFFICER, media(jpeg_bytes()))  # the officer resent it: the library keeps one
    reply = wechat.text(OFFICER, "占道经营")["Content"]
    # Before: 「另有 1 张未能存入素材库：与素材 #n 是同一张照片，请重新发送」, which only makes another copy.
    assert reply.startswith("已为 1 张照片（其中 1 张素材库中已有，未重复保存）添加说明")
    assert "请重新发送" not in reply
    kept = _items()[0]
    assert kept.caption == "占道经营"  # once, though the burst holds it and its copy
    # The same photo again later, in a burst of its own: the caption sent for it goes to the photo in the library.
    for item in _items():
        item.received_at -= timedelta(hours=1)
    db.session.commit()
    get_redis().delete(materials.BURST_KEY.format(OFFICER))  # the burst's 5 minutes are over
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    reply = wechat.text(OFFICER, "夜间")["Content"]
    assert reply.startswith("已为 1 张照片（其中 1 张素材库中已有")
    db.session.refresh(kept)
    assert kept.caption == "占道经营 夜间"
