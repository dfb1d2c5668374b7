"""随手拍 in chat through /wechat: photos, a location and a text become one tip; officers' photos do not."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import PhotoState, Tip, TipDraft, TipDraftState, TipPhoto, TipSource, utcnow
from server.extensions import db
from server.services import images, tips
from tests import factories
from tests.services.test_images import HTML_AS_JPG, exif_of, jpeg_bytes

CITIZEN = "o-chat-citizen"


@pytest.fixture
def media(emulator):
    """Puts bytes into the emulator as a user's temporary media; returns its media_id."""

    def put(data: bytes) -> str:
        return emulator.hook("media", {"content_base64": base64.b64encode(data).decode()}).json()["media_id"]

    return put


def send_image(wechat, openid: str, media_id: str) -> str:
    reply = wechat.send(openid, "image", {"PicUrl": f"http://example.invalid/{media_id}", "MediaId": media_id})
    return reply["Content"]


def send_location(wechat, openid: str, lat: float = 31.2304, lng: float = 121.4737, label: str = "人民广场") -> str:
    reply = wechat.send(openid, "location", {"Location_X": lat, "Location_Y": lng, "Scale": 15, "Label": label})
    return reply["Content"] if reply else ""


def _tips() -> list[Tip]:
    return list(db.session.scalars(sa.select(Tip).order_by(Tip.id)))


def test_photos_location_and_text_become_one_tip(wechat, media, db_session):
    first = send_image(wechat, CITIZEN, media(jpeg_bytes(gps=True)))
    assert "已收到照片" in first and "位置" in first and "文字说明" in first
    assert "第 2 张" in send_image(wechat, CITIZEN, media(jpeg_bytes(colour="blue")))
    reply = send_location(wechat, CITIZEN)
    assert "已收到位置：人民广场" in reply and "请发送文字说明" in reply and "发送「提交」直接提交" in reply
    assert "还需要" not in reply  # 提交 files without a description: it is not "needed"
    reply = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")["Content"]
    [tip] = _tips()
    assert reply.startswith(f"线索已提交，编号 {tip.display_no}（2 张照片）")
    assert tip.source is TipSource.CHAT and tip.category == "乱设摊" and tip.address == "人民广场"
    assert (tip.latitude, tip.longitude) == (31.2304, 121.4737)
    photos = db.session.scalars(sa.select(TipPhoto).filter_by(tip_id=tip.id).order_by(TipPhoto.id)).all()
    assert len(photos) == 2 and all(p.state is PhotoState.READY for p in photos)  # downloaded by the (eager) task
    assert not exif_of(images.media_path(photos[0].public_path).read_bytes()).get_ifd(0x8825)
    assert exif_of(images.media_path(photos[0].original_path).read_bytes()).get_ifd(0x8825)  # evidence kept
    draft = db.session.scalars(sa.select(TipDraft)).one()
    assert draft.state is TipDraftState.SUBMITTED and draft.tip_id == tip.id
    # The draft is closed: the next text is an ordinary message again.
    assert tips.reply_to_chat_text(CITIZEN, "你好", utcnow()) is None


def test_text_before_location_then_location_submits(wechat, media, db_session):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    reply = wechat.text(CITIZEN, "有人在这里乱倒垃圾")["Content"]
    assert "已记录文字说明" in reply and "位置" in reply
    assert "线索已提交" in send_location(wechat, CITIZEN)
    assert _tips()[0].category == "市容环境"


def test_submit_with_photo_and_location_only(wechat, media, db_session):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    assert "至少需要一张照片和位置" in wechat.text(CITIZEN, "提交")["Content"]
    assert "发送「提交」" in send_location(wechat, CITIZEN)
    assert "线索已提交" in wechat.text(CITIZEN, "提交")["Content"]
    [tip] = _tips()
    assert tip.category == "其他" and len(tip.description) >= 5


def test_cancel_drops_the_draft(wechat, media, db_session):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    assert "已取消" in wechat.text(CITIZEN, "取消")["Content"]
    assert db.session.scalars(sa.select(TipDraft)).one().state is TipDraftState.CANCELLED
    assert _tips() == []
    # With no draft open, a location goes to the other location handlers (None from the tips hook).
    assert tips.attach_chat_location(CITIZEN, 31.2, 121.4, None, utcnow()) is None


def test_an_officers_photo_is_not_a_tip(wechat, media, db_session):
    officer = factories.staff("zhangsan", "officer", unit=factories.unit("浦东分局"), name="张三")
    officer.openid = "o-officer"
    db.session.commit()
    assert send_image(wechat, "o-officer", media(jpeg_bytes())).startswith("已收到 1 张现场照片")  # a material item
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipDraft)) == 0


def test_a_blocked_citizen_gets_a_polite_refusal(wechat, media, db_session):
    tips.block(CITIZEN, "恶意提交")
    assert "12345" in send_image(wechat, CITIZEN, media(jpeg_bytes()))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipDraft)) == 0


def test_a_photo_that_is_not_an_image_is_marked_and_does_not_count(wechat, media, db_session):
    send_image(wechat, CITIZEN, media(HTML_AS_JPG))
    photo = db.session.scalars(sa.select(TipPhoto)).one()
    assert photo.state is PhotoState.FAILED and "不是有效的图片" in photo.error
    assert photo.original_path is None
    send_location(wechat, CITIZEN)
    assert "照片" in wechat.text(CITIZEN, "提交")["Content"]
    assert _tips() == []


def test_a_photo_whose_download_outlived_its_retries_is_found_by_the_sweep(app, wechat, media, emulator, db_session):
    emulator.hook("fail", {"path": "cgi-bin/media/get", "errcode": -1, "errmsg": "system error", "times": 20})
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    photo = db.session.scalars(sa.select(TipPhoto)).one()
    assert photo.state is PhotoState.PENDING  # WeChat was down for every retry
    emulator.hook("fail", {"path": "cgi-bin/media/get", "errcode": -1, "times": 0})
    assert tips.stalled_chat_photos() == []  # its task may still be retrying
    photo.created_at = utcnow() - tips.STALLED_AFTER - timedelta(minutes=1)
    db.session.commit()
    assert tips.stalled_chat_photos() == [photo.id]
    tips.fetch_chat_photo(photo.id)  # what the sweep's task queues for it
    assert db.session.get(TipPhoto, photo.id, populate_existing=True).state is PhotoState.READY
    assert tips.stalled_chat_photos() == []
    beat = {entry["task"] for entry in app.config["CELERY"]["beat_schedule"].values()}
    assert {"server.tasks.tips.requeue_stalled_photos", "server.tasks.materials.requeue_stalled_items"} <= beat


def test_a_download_another_worker_holds_is_not_made_twice(wechat, media, emulator, db_session):
    from server.extensions import exclusive
    from server.tasks import tips as tip_tasks

    emulator.hook("fail", {"path": "cgi-bin/media/get", "errcode": -1, "errmsg": "system error", "times": 20})
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    photo = db.session.scalars(sa.select(TipPhoto)).one()
    emulator.hook("fail", {"path": "cgi-bin/media/get", "errcode": -1, "times": 0})
    emulator.hook("clear-calls")
    with exclusive(f"tip-photo:{photo.id}") as mine:  # another worker's retry is downloading it right now
        assert mine
        tip_tasks.fetch_chat_photo(photo.id)  # the sweep's copy, run in this process
        assert not [c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/media/get"]
    tip_tasks.fetch_chat_photo(photo.id)  # once the other is done (here: gave up), the next one may
    assert db.session.get(TipPhoto, photo.id, populate_existing=True).state is PhotoState.READY


def test_an_expired_draft_is_kept_but_closed(wechat, media, db_session, redis_client):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    draft = db.session.scalars(sa.select(TipDraft)).one()
    draft.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert "没有提交" in tips.reply_to_chat_text(CITIZEN, "有人摆摊卖东西", utcnow())  # told, once
    assert db.session.get(TipDraft, draft.id, populate_existing=True).state is TipDraftState.EXPIRED
    assert tips.reply_to_chat_text(CITIZEN, "有人摆摊卖东西", utcnow()) is None
    assert "已收到照片" in send_image(wechat, CITIZEN, media(jpeg_bytes()))  # a new draft opens
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipDraft)) == 2


def test_a_draft_survives_a_redis_restart(wechat, media, db_session, redis_client):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    redis_client.flushdb()
    assert "第 2 张" in send_image(wechat, CITIZEN, media(jpeg_bytes()))  # found in the database again


class CountingRedis:
    def __init__(self, real) -> None:
        self.real, self.calls = real, []

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if callable(attr):

            def counted(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)

            return counted
        return attr


def test_no_draft_costs_one_redis_get_and_no_sql(app, db_session, monkeypatch):
    counting = CountingRedis(app.extensions["redis"])
    monkeypatch.setitem(app.extensions, "redis", counting)
    statements = []
    engine = db.engine

    def seen(*args, **kwargs):
        statements.append(args[2] if len(args) > 2 else "?")

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert tips.reply_to_chat_text("o-nobody", "你好，请问开放日几号", utcnow()) is None
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert counting.calls == ["get"] and statements == []


def test_the_text_handler_still_answers_normally_without_a_draft(wechat, db_session):
    factories.rule("开放日", "开放日每月第一个周六。")
    assert wechat.text(CITIZEN, "开放日")["Content"] == "开放日每月第一个周六。"


def test_ones_own_tracking_number_in_chat_answers_its_status_and_spends_no_binding_attempt(wechat, media, db_session):
    from server.services import binding

    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    send_location(wechat, CITIZEN)
    wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")
    [tip] = _tips()
    for typed in (tip.tracking_no, tip.display_no.lower(), f" {tip.tracking_no[:4]} {tip.tracking_no[4:]} "):
        reply = wechat.text(CITIZEN, typed)["Content"]
        assert reply.startswith(f"线索 {tip.display_no}（乱设摊）当前状态：{tip.status.label}") and "/m/tips/" in reply
    assert binding._attempts(CITIZEN) == 0
    other = wechat.text("o-someone-else", tip.tracking_no)  # another citizen's number: not theirs to read
    assert other is None or tip.display_no not in other.get("Content", "")


def test_a_tracking_number_with_the_words_around_it_is_answered_too(wechat, media, db_session):
    # Citizens copy 「编号 XXXX-XXXX」 from the filing reply or write 「查询…」: that got the general default reply.
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    send_location(wechat, CITIZEN)
    wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")
    [tip] = _tips()
    no = tip.display_no
    for typed in (f"编号 {no}", f"查询{no}", f"线索编号：{no}", f"{no} 进度"):
        reply = wechat.text(CITIZEN, typed)["Content"]
        assert reply.startswith(f"线索 {tip.display_no}（乱设摊）当前状态：") and "/m/tips/" in reply, typed


def test_a_text_after_the_draft_lapsed_is_told_so_once(wechat, media, db_session):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    draft = db.session.scalars(sa.select(TipDraft)).one()
    draft.expires_at = utcnow() - timedelta(minutes=1)  # ten quiet minutes went by
    db.session.commit()
    reply = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")["Content"]
    assert "您之前发送的 1 张照片超过 10 分钟没有补全" in reply and _tips() == []
    again = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")
    assert again is None or "没有补全" not in again.get("Content", "")  # said once; then an ordinary message
    db.session.expire_all()
    assert db.session.get(TipDraft, draft.id).state is TipDraftState.EXPIRED  # kept, photos and all


def test_cancel_or_bind_without_anything_open_is_answered_for_what_it_is(wechat, db_session):
    assert wechat.text(CITIZEN, "取消")["Content"] == tips.NOTHING_TO_CANCEL
    assert "绑定码为 8 位字母和数字" in wechat.text(CITIZEN, "绑定")["Content"]


def test_a_location_after_the_draft_lapsed_is_told_so_too(wechat, media, db_session):
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    draft = db.session.scalars(sa.select(TipDraft)).one()
    draft.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert "没有补全" in send_location(wechat, CITIZEN)


def test_a_keyword_sent_while_a_tip_is_being_assembled_is_answered_and_the_draft_stays(wechat, media, db_session):
    factories.rule("开放日", "开放日每月第一个周六。")
    send_image(wechat, CITIZEN, media(jpeg_bytes()))
    send_location(wechat, CITIZEN)
    assert wechat.text(CITIZEN, "开放日")["Content"] == "开放日每月第一个周六。"  # not 「文字说明请至少 5 个字」
    assert "文字说明请至少" in wechat.text(CITIZEN, "好的")["Content"]  # a short word no keyword answers
    reply = wechat.text(CITIZEN, "路口有人摆摊卖水果，占了人行道")["Content"]
    assert reply.startswith("线索已提交") and len(_tips()) == 1
