"""Officers told in chat, through WeChat's customer-service messages, of their photos that did not make it into the
material library: once per photo, one text per burst, a refusal (45015) recorded instead of retried."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import AuditLog, MaterialItem, MaterialState, utcnow
from server.extensions import db, exclusive
from server.filters import local_when
from server.services import images, lost_photos, materials
from server.services.tips import CHAT_MEDIA_LIFETIME
from server.tasks import materials as tasks
from tests import factories
from tests.handlers.test_tips import media as media  # noqa: F401  (a fixture, shared)
from tests.handlers.test_tips import send_image
from tests.services.test_images import jpeg_bytes

OFFICER = "o-officer-wang"
NOT_A_PHOTO = b"\xff\xd8\xff\xe0 not a photo"
NOT_AN_IMAGE = images.NOT_AN_IMAGE.split("，请")[0]
CUSTOM_SEND = "cgi-bin/message/custom/send"


@pytest.fixture
def officer(db_session, emulator):
    person = factories.staff("wangwu", "officer", unit=factories.unit("静安分局"), name="王五")
    person.openid = OFFICER
    db.session.commit()
    emulator.hook("users", {"openids": [OFFICER]})  # a follower of the account, as every bound officer is
    return person


def _items() -> list[MaterialItem]:
    return list(db.session.scalars(sa.select(MaterialItem).order_by(MaterialItem.id)))


def _sent(emulator) -> list[tuple[str, str]]:
    return [(m["touser"], m["text"]["content"]) for m in emulator.state()["custom_sent"]]


def _notices() -> dict[int, dict]:
    stmt = sa.select(AuditLog).where(AuditLog.action == lost_photos.LOST_NOTICE).order_by(AuditLog.id)
    return {int(e.target_id): e.after for e in db.session.scalars(stmt)}


def _burst_over() -> object:
    return utcnow() + materials.PAIR_WINDOW + timedelta(seconds=1)


def _age(items: list[MaterialItem], by: timedelta) -> None:
    for item in items:
        item.received_at -= by
    db.session.commit()


def test_an_officer_who_sent_no_caption_is_told_once_when_the_burst_is_over(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    kept, refused = _items()
    assert refused.state is MaterialState.FAILED
    assert lost_photos.tell_officers() == 0  # the burst goes on: the next photo may be lost too
    assert _sent(emulator) == []

    assert lost_photos.tell_officers(_burst_over()) == 1
    text = f"您{local_when(refused.received_at)} 发送的现场照片未能存入素材库：{NOT_AN_IMAGE}。请重新发送这张照片。"
    assert _sent(emulator) == [(OFFICER, text)]
    assert _notices() == {refused.id: {"notice": lost_photos.SENT, "text": text}}

    # The beat task again, and again (a retry, the next minute): nothing new.
    _age(_items(), materials.PAIR_WINDOW + timedelta(minutes=1))
    tasks.tell_lost_photos.delay()
    tasks.tell_lost_photos.delay()
    assert _sent(emulator) == [(OFFICER, text)] and len(_notices()) == 1
    assert emulator.state()["call_counts"][CUSTOM_SEND] == 1


def test_three_photos_lost_in_one_burst_are_one_message(officer, wechat, media, emulator):
    photo = jpeg_bytes()
    send_image(wechat, OFFICER, media(photo))
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    send_image(wechat, OFFICER, "no-such-media")  # WeChat no longer has it
    send_image(wechat, OFFICER, media(photo))  # sent again: it is in the library, nothing to send again
    send_image(wechat, OFFICER, media(b""))
    kept, broken, gone, copy, empty = _items()
    assert [i.state for i in (broken, gone, copy, empty)] == [MaterialState.FAILED] * 4

    assert lost_photos.tell_officers(_burst_over()) == 1
    [(to, text)] = _sent(emulator)
    assert to == OFFICER
    assert text.split("\n") == [
        "您发送的 3 张现场照片未能存入素材库：",
        f"1. {local_when(broken.received_at)} 发送的现场照片：{NOT_AN_IMAGE}",
        f"2. {local_when(gone.received_at)} 发送的现场照片：{materials.EXPIRED}",
        f"3. {local_when(empty.received_at)} 发送的现场照片：照片文件是空的",
        "请从手机相册中找到这些照片，重新发送给公众号。",
    ]
    assert set(_notices()) == {broken.id, gone.id, empty.id}
    assert lost_photos.tell_officers(_burst_over()) == 0 and len(_sent(emulator)) == 1


def test_photos_named_in_the_caption_reply_are_not_told_again_a_photo_lost_after_it_is_with_its_caption(
    officer, wechat, media, emulator
):
    send_image(wechat, OFFICER, media(jpeg_bytes()))
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    emulator.hook("fail", {"path": "cgi-bin/media/get", "errcode": -1})  # its retries come later
    send_image(wechat, OFFICER, media(jpeg_bytes(colour="blue", size=(80, 40))))
    assert emulator.state()["failures"] == {}
    kept, refused, stalled = _items()
    assert stalled.state is MaterialState.PENDING  # WeChat was down: the sweep downloads it later
    reply = wechat.text(OFFICER, "占道经营，已责令整改")["Content"]
    assert "另有 1 张未能存入素材库" in reply  # the refused photo: the officer knows
    assert lost_photos.tell_officers(_burst_over()) == 0 and _sent(emulator) == []
    assert _notices() == {refused.id: {"notice": lost_photos.IN_REPLY}}

    # WeChat stayed out of reach for three days: the sweep gives the stalled photo up, and the officer hears of it.
    _age([stalled], CHAT_MEDIA_LIFETIME + timedelta(minutes=1))
    tasks.requeue_stalled_items.delay()
    db.session.refresh(stalled)
    assert stalled.state is MaterialState.FAILED
    assert lost_photos.tell_officers() == 1
    assert _sent(emulator) == [
        (
            OFFICER,
            f"您{local_when(stalled.received_at)} 发送的现场照片（说明：占道经营，已责令整改）未能存入素材库："
            f"{materials.EXPIRED}。请重新发送这张照片。",
        )
    ]


def test_an_officer_silent_for_48_hours_cannot_be_told_which_is_recorded_not_retried(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    [refused] = _items()
    emulator.hook("interaction", {"openid": OFFICER, "at": emulator.state()["now"] - 49 * 3600})
    assert lost_photos.tell_officers(_burst_over()) == 1  # settled: WeChat said no
    assert _sent(emulator) == []
    after = _notices()[refused.id]
    assert after["notice"] == lost_photos.NOT_SENT and after["error"].startswith("45015 ")
    tasks.tell_lost_photos.delay()  # the next sweeps leave it alone
    assert lost_photos.tell_officers(_burst_over()) == 0
    assert emulator.state()["call_counts"][CUSTOM_SEND] == 1
    # The console lists it among the photos not saved, saying the officer was not told.
    assert materials.recent_failures(materials.MaterialFilter(), None) == ([refused], 1)
    assert lost_photos.notice_states([refused]) == {refused.id: f"{lost_photos.NOT_SENT}：{after['error']}"}


def test_an_officer_no_longer_bound_is_recorded_as_not_told(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    officer.openid = None
    db.session.commit()
    assert lost_photos.tell_officers(_burst_over()) == 1
    assert _notices()[_items()[0].id] == {"notice": lost_photos.NOT_SENT, "error": "队员已停用或未绑定微信"}
    assert CUSTOM_SEND not in emulator.state()["call_counts"]


def test_wechat_busy_is_tried_again_by_the_next_sweeps_then_recorded(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    send_image(wechat, OFFICER, media(b"%PDF-1.4 not a photo"))
    emulator.hook("fail", {"path": CUSTOM_SEND, "errcode": -1, "times": 1})
    assert lost_photos.tell_officers(_burst_over()) == 0 and _notices() == {}
    assert lost_photos.tell_officers(_burst_over()) == 1
    assert len(_sent(emulator)) == 1 and len(_notices()) == 2

    send_image(wechat, OFFICER, media(b"GIF89a broken"))
    emulator.hook("fail", {"path": CUSTOM_SEND, "errcode": -1, "times": 5})
    assert [lost_photos.tell_officers(_burst_over()) for _ in range(4)] == [0, 0, 1, 0]  # three tries
    last = _items()[-1]
    assert _notices()[last.id] == {"notice": lost_photos.NOT_SENT, "error": "-1 微信系统繁忙"}
    assert len(_sent(emulator)) == 1 and emulator.state()["call_counts"][CUSTOM_SEND] == 5


def test_a_worker_telling_the_officer_is_not_doubled_by_another(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    with exclusive(f"lost-photos:{officer.id}") as mine:  # another worker is at it
        assert mine
        assert lost_photos.tell_officers(_burst_over()) == 0
    assert _sent(emulator) == []
    assert lost_photos.tell_officers(_burst_over()) == 1
    assert len(_sent(emulator)) == 1


def test_an_officer_sending_photo_after_photo_hears_of_a_lost_one_within_15_minutes(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    [refused] = _items()
    _age([refused], timedelta(minutes=14))
    send_image(wechat, OFFICER, media(jpeg_bytes()))  # the burst goes on
    assert lost_photos.tell_officers() == 0
    _age([refused], timedelta(minutes=2))
    assert lost_photos.tell_officers() == 1
    assert len(_sent(emulator)) == 1


def test_a_text_whose_answer_was_lost_on_the_way_back_is_not_sent_again(officer, wechat, media, emulator):
    send_image(wechat, OFFICER, media(NOT_A_PHOTO))
    emulator.hook("garble", {"path": CUSTOM_SEND})  # WeChat sent it; its answer arrived cut off
    assert lost_photos.tell_officers(_burst_over()) == 1
    assert lost_photos.tell_officers(_burst_over()) == 0
    assert len(_sent(emulator)) == 1 and emulator.state()["call_counts"][CUSTOM_SEND] == 1
    [after] = _notices().values()
    assert after["notice"] == lost_photos.NOT_SENT and "无法解析" in after["error"]
