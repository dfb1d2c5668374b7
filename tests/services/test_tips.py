"""The tips service: filing, double submits, quotas under concurrency, nearby/support, lifecycle and the outbox."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import (
    AuditLog,
    NoticeState,
    Tip,
    TipNotice,
    TipPhoto,
    TipStatus,
    TipSupport,
    utcnow,
)
from server.extensions import db
from server.services import ServiceError, images, pii, tips
from tests import factories
from tests.services.test_images import jpeg_bytes

SHANGHAI = (31.2304, 121.4737)


def file_tip(openid: str = "o-citizen", **overrides):
    values = {
        "category": "占道经营",
        "description": "小区门口有人占道摆摊，影响通行",
        "photos": [jpeg_bytes(gps=True)],
        "latitude": SHANGHAI[0],
        "longitude": SHANGHAI[1],
        "address": "黄浦区人民大道 200 号",
        "phone": None,
        "submit_key": secrets.token_urlsafe(24),
    }
    values.update(overrides)
    return tips.submit_tip(openid, **values)


def offset(metres_north: float, metres_east: float = 0.0) -> tuple[float, float]:
    import math

    lat = SHANGHAI[0] + metres_north / 111_195
    lng = SHANGHAI[1] + metres_east / (111_195 * math.cos(math.radians(SHANGHAI[0])))
    return lat, lng


# -- filing ----------------------------------------------------------------------------------------------------------


@pytest.mark.smoke  # also on the embedded SQLite (Python haversine, fakeredis Lua)
def test_a_tip_is_filed_with_its_photos_and_an_encrypted_phone(db_session):
    tip = file_tip(phone="13800001234", photos=[jpeg_bytes(gps=True), jpeg_bytes(colour="blue")])
    assert tip.status is TipStatus.SUBMITTED and tip.history[0].to_status is TipStatus.SUBMITTED
    assert len(tip.tracking_no) == 8 and set(tip.tracking_no) <= set(tips.TRACKING_ALPHABET)
    assert not set(tip.tracking_no) & set("0O1IL")
    assert tip.display_no == f"{tip.tracking_no[:4]}-{tip.tracking_no[4:]}"
    assert "13800001234" not in tip.phone_enc and pii.decrypt(tip.phone_enc) == "13800001234"
    assert tips.mask_phone(tip) == "138****1234"
    photos = db.session.scalars(sa.select(TipPhoto).filter_by(tip_id=tip.id)).all()
    assert len(photos) == 2
    for photo in photos:
        assert images.media_path(photo.original_path).read_bytes()[:2] == b"\xff\xd8"
        assert images.media_path(photo.public_path).is_file() and images.media_path(photo.thumb_path).is_file()
    assert tips.find_own_tip("o-citizen", tip.display_no.lower()) == tip
    assert tips.find_own_tip("o-someone-else", tip.tracking_no) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"category": "不存在"}, "请选择线索类别"),
        ({"description": "短"}, "5 到 1000"),
        ({"description": "长" * 1001}, "5 到 1000"),
        ({"latitude": None, "longitude": None, "address": ""}, "获取当前位置"),
        ({"latitude": 95, "longitude": 10}, "定位数据有误"),
        ({"phone": "12345"}, "11 位手机号码"),
        ({"photos": []}, "1 到 9 张"),
        ({"photos": [jpeg_bytes()] * 10}, "1 到 9 张"),
        ({"submit_key": "short"}, "刷新"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(db_session, overrides, message):
    with pytest.raises(ServiceError, match=message):
        file_tip(**overrides)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0


def test_a_bad_photo_among_good_ones_stores_nothing(db_session, app):
    before = sorted(images.media_root().rglob("*"))
    with pytest.raises(images.ImageRejected, match="第 2 张照片"):
        file_tip(photos=[jpeg_bytes(colour="green"), b"<html></html>"])
    assert sorted(images.media_root().rglob("*")) == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipPhoto)) == 0


def test_address_alone_is_enough(db_session):
    tip = file_tip(latitude="", longitude="", address="徐汇区漕溪北路 1 号")
    assert tip.latitude is None and tip.address == "徐汇区漕溪北路 1 号"


def test_a_double_submit_files_one_tip_and_takes_one_quota(db_session, redis_client):
    key = secrets.token_urlsafe(24)
    first = file_tip(submit_key=key)
    again = file_tip(submit_key=key)
    assert again.id == first.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 1
    keys, _ = tips._quota_keys("o-citizen", None)
    assert int(redis_client.get(keys[0])) == 1


def test_the_daily_limit_refuses_the_eleventh(db_session, app):
    for _ in range(10):
        file_tip()
    with pytest.raises(ServiceError, match="已达上限"):
        file_tip()
    file_tip("o-another")  # per openid


def test_the_ip_limit_counts_across_openids(db_session, app, monkeypatch):
    monkeypatch.setitem(app.config, "TIP_DAILY_LIMIT_IP", 3)
    for n in range(3):
        file_tip(f"o-{n}", ip="10.0.0.9")
    with pytest.raises(ServiceError, match="每天 3 条"):
        file_tip("o-4", ip="10.0.0.9")


def test_with_redis_down_the_limits_count_todays_tips_in_the_database(db_session, app, redis_down, monkeypatch):
    monkeypatch.setitem(app.config, "TIP_DAILY_LIMIT", 2)
    monkeypatch.setitem(app.config, "TIP_DAILY_LIMIT_IP", 3)
    file_tip("o-a", ip="10.0.0.9")
    file_tip("o-a", ip="10.0.0.9")
    with pytest.raises(ServiceError, match="每天 2 条"):
        file_tip("o-a", ip="10.0.0.7")
    file_tip("o-b", ip="10.0.0.9")
    with pytest.raises(ServiceError, match="每天 3 条"):
        file_tip("o-c", ip="10.0.0.9")


def test_a_blocked_citizen_is_refused_politely(db_session):
    tips.block("o-spammer", "恶意重复提交")
    with pytest.raises(ServiceError, match="12345"):
        file_tip("o-spammer")


def _threads(count: int, work) -> list:
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001  (collected for the assertions)
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_the_limit_holds_under_50_concurrent_submits(app, committed_db, redis_client):
    photo = jpeg_bytes()

    def submit(i: int):
        with app.app_context():
            try:
                return file_tip("o-burst", photos=[photo], submit_key=f"burst-key-{i:04d}-xxxxxxxxxx").id
            finally:
                db.session.remove()

    results = _threads(50, submit)
    filed = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, ServiceError)]
    assert len(filed) == 10 and len(refused) == 40, [r for r in results if not isinstance(r, int | ServiceError)]
    assert all("已达上限" in str(r) for r in refused)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip).filter_by(openid="o-burst")) == 10


def test_concurrent_double_submits_file_one_tip(app, committed_db, redis_client):
    photo = jpeg_bytes()

    def submit(i: int):
        with app.app_context():
            try:
                return file_tip("o-tapper", photos=[photo], submit_key="same-key-tapped-many-times").id
            finally:
                db.session.remove()

    results = _threads(8, submit)
    assert len(set(results)) == 1 and isinstance(results[0], int), results
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 1
        keys, _ = tips._quota_keys("o-tapper", None)
        assert int(redis_client.get(keys[0])) == 1  # the losers gave their quota back


# -- nearby and support ----------------------------------------------------------------------------------------------


@pytest.mark.smoke  # also on the embedded SQLite (Python haversine, fakeredis Lua)
def test_nearby_finds_open_tips_of_the_category_within_250_m(db_session):
    near = file_tip("o-a", latitude=offset(150, 100)[0], longitude=offset(150, 100)[1])
    far = file_tip("o-b", latitude=offset(300)[0], longitude=offset(300)[1])
    other = file_tip("o-c", category="犬类管理")
    closed = file_tip("o-d")
    closed.status = TipStatus.RESOLVED
    db.session.commit()
    found = tips.nearby_open_tips(*SHANGHAI, "占道经营")
    assert [t.id for t, _ in found] == [near.id]
    assert 170 < found[0][1] < 190
    assert far.id not in [t.id for t, _ in found] and other.id not in [t.id for t, _ in found]


def test_support_counts_once_per_citizen(db_session):
    tip = file_tip("o-owner")
    assert tips.support_tip("o-neighbour", tip.display_no) == (tip, True)
    assert tips.support_tip("o-neighbour", tip.tracking_no)[1] is False
    tips.support_tip("o-other", tip.tracking_no)
    assert db.session.get(Tip, tip.id).support_count == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TipSupport)) == 2
    with pytest.raises(ServiceError, match="自己"):
        tips.support_tip("o-owner", tip.tracking_no)


# -- lifecycle and notices -------------------------------------------------------------------------------------------


@pytest.fixture
def people(db_session, emulator):
    district = factories.unit("浦东分局")
    other = factories.unit("徐汇分局")
    editor = factories.staff("editor1", "editor", name="李编辑")
    liaison = factories.staff("liaison1", "liaison", unit=district, name="王联络")
    stranger = factories.staff("liaison2", "liaison", unit=other, name="赵联络")
    reviewer = factories.staff("reviewer1", "reviewer", name="钱审核")
    liaison.openid = "o-liaison-wang"
    district.post_a_id = liaison.id
    db.session.commit()
    emulator.hook("users", {"users": [{"openid": "o-citizen", "subscribe": 1}, {"openid": "o-liaison-wang"}]})
    return {"district": district, "editor": editor, "liaison": liaison, "stranger": stranger, "reviewer": reviewer}


def _sent(emulator, openid: str) -> list[dict]:
    return [t for t in emulator.state()["templates_sent"] if t["touser"] == openid]


def test_the_lifecycle_notifies_the_citizen_and_the_unit(people, emulator):
    tip = file_tip()
    tips.transition(tip.id, "accept", people["editor"], note="已受理，将尽快派发")
    assert [t["data"]["phrase2"]["value"] for t in _sent(emulator, "o-citizen")] == ["已受理"]
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["district"].id)
    request = _sent(emulator, "o-liaison-wang")
    assert len(request) == 1 and request[0]["data"]["character_string1"]["value"] == tip.display_no
    tips.transition(tip.id, "start", people["liaison"])
    tips.transition(tip.id, "resolve", people["liaison"], note="摊位已清理")
    sent = _sent(emulator, "o-citizen")
    assert [t["data"]["phrase2"]["value"] for t in sent] == ["已受理", "已办结"]
    assert sent[1]["data"]["thing4"]["value"] == "摊位已清理"
    assert len({t["client_msg_id"] for t in sent}) == 2
    tip = db.session.get(Tip, tip.id)
    assert [h.to_status for h in tip.history] == [
        TipStatus.SUBMITTED,
        TipStatus.ACCEPTED,
        TipStatus.DISPATCHED,
        TipStatus.IN_PROGRESS,
        TipStatus.RESOLVED,
    ]
    assert tip.history[-1].staff_name == "王联络"
    actions = db.session.scalars(
        sa.select(AuditLog.action).where(AuditLog.target_type == "tip").order_by(AuditLog.id)
    ).all()
    assert actions == ["tip.accept", "tip.dispatch", "tip.start", "tip.resolve"]
    assert all(n.state is NoticeState.SENT for n in tips.notices_of(tip))


def test_the_dispatch_request_links_the_liaison_to_the_tip(people, emulator, app, monkeypatch):
    # The liaison opens the tip from the notice on their phone; without a link it was a dead end.
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://wx.example.gov.cn/")
    tip = file_tip()
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["district"].id)
    (request,) = _sent(emulator, "o-liaison-wang")
    assert request["url"] == f"https://wx.example.gov.cn/admin/tips/{tip.id}"


def test_dispatch_from_submitted_accepts_first(people, emulator):
    tip = file_tip()
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["district"].id)
    tip = db.session.get(Tip, tip.id)
    assert [h.to_status for h in tip.history][1:] == [TipStatus.ACCEPTED, TipStatus.DISPATCHED]
    assert [t["data"]["phrase2"]["value"] for t in _sent(emulator, "o-citizen")] == ["已受理"]


def test_a_tip_started_by_the_wrong_unit_can_be_dispatched_again(people, emulator):
    # A unit that started a tip and then found it lies outside its area: the editor's only way on was 办结, which told
    # the citizen the problem was solved. Now it goes to the right unit, whose liaison is asked to handle it.
    other_post = factories.staff("liaison3", "liaison", unit=people["stranger"].unit, name="孙联络")
    other_post.openid = "o-liaison-sun"
    people["stranger"].unit.post_a_id = other_post.id
    db.session.commit()
    emulator.hook("users", {"users": [{"openid": o} for o in ("o-citizen", "o-liaison-wang", "o-liaison-sun")]})
    tip = file_tip()
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["district"].id)
    tips.transition(tip.id, "start", people["liaison"])
    assert "dispatch" in [a.name for a in tips.allowed_actions(db.session.get(Tip, tip.id), people["editor"])]
    with pytest.raises(ServiceError, match="已派发给「浦东分局」"):  # the same unit again: nothing to redo
        tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["district"].id)
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["stranger"].unit_id, note="属徐汇辖区")
    tip = db.session.get(Tip, tip.id)
    assert tip.status is TipStatus.DISPATCHED and tip.unit_id == people["stranger"].unit_id
    assert [t["data"]["character_string1"]["value"] for t in _sent(emulator, "o-liaison-sun")] == [tip.display_no]
    assert [t["data"]["phrase2"]["value"] for t in _sent(emulator, "o-citizen")] == ["已受理"]  # no false 已办结
    with pytest.raises(tips.NotAllowed):  # the first unit's liaison no longer works it
        tips.transition(tip.id, "resolve", people["liaison"])


def test_who_may_do_what(people):
    tip = file_tip()
    for who in ("reviewer", "liaison", "stranger"):
        with pytest.raises(tips.NotAllowed):
            tips.transition(tip.id, "accept", people[who])
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=people["district"].id)
    with pytest.raises(tips.NotAllowed):
        tips.transition(tip.id, "start", people["stranger"])  # another unit's liaison
    with pytest.raises(tips.NotAllowed):
        tips.transition(tip.id, "resolve", people["reviewer"])
    with pytest.raises(ServiceError, match="不能受理"):
        tips.transition(tip.id, "accept", people["editor"])
    tips.transition(tip.id, "resolve", people["liaison"])


def test_reject_needs_a_reason_and_tells_the_citizen(people, emulator):
    tip = file_tip()
    with pytest.raises(ServiceError, match="原因"):
        tips.transition(tip.id, "reject", people["editor"])
    tips.transition(tip.id, "reject", people["editor"], note="不属于城管职责，请拨打 12345")
    sent = _sent(emulator, "o-citizen")
    assert sent[0]["data"]["phrase2"]["value"] == "不予受理"
    assert db.session.get(Tip, tip.id).history[-1].note == "不属于城管职责，请拨打 12345"


def test_duplicate_points_at_the_original_and_the_citizen_is_told_without_its_number(people, emulator):
    original = file_tip("o-first")
    copy = file_tip()
    assert [t.id for t, _ in tips.duplicate_candidates(copy)] == [original.id]
    tips.transition(copy.id, "duplicate", people["editor"], duplicate_of=original.display_no)
    copy = db.session.get(Tip, copy.id)
    assert copy.status is TipStatus.DUPLICATE and copy.duplicate_of_id == original.id
    assert original.display_no not in copy.history[-1].note  # another citizen's number: the console links it
    (sent,) = _sent(emulator, copy.openid)
    assert sent["data"]["phrase2"]["value"] == TipStatus.DUPLICATE.label


def test_duplicates_hear_how_the_tip_handled_for_them_ended(people, emulator):
    editor = people["editor"]
    emulator.hook("users", {"users": [{"openid": o, "subscribe": 1} for o in ("o-second", "o-third")]})
    original, copy, later = file_tip("o-first"), file_tip("o-second"), file_tip("o-third")
    tips.transition(copy.id, "duplicate", editor, duplicate_of=original.display_no)
    # A duplicate of a duplicate points at the tip actually handled, so that it hears the outcome too.
    tips.transition(later.id, "duplicate", editor, duplicate_of=copy.display_no)
    assert db.session.get(Tip, later.id).duplicate_of_id == original.id
    tips.transition(original.id, "dispatch", editor, unit_id=people["district"].id)
    tips.transition(original.id, "resolve", editor, note="摊位已清理")
    # Before: they had been told 「将与该线索一并处理」 and never heard of it again.
    for openid, tip in (("o-second", copy), ("o-third", later)):
        last = _sent(emulator, openid)[-1]["data"]
        assert last["thing4"]["value"] == "同一问题的线索已办结：摊位已清理"
        tip = db.session.get(Tip, tip.id)
        assert tip.status is TipStatus.DUPLICATE and tip.history[-1].note == "同一问题的线索已办结：摊位已清理"
    # A closed tip is no original: 「将与该线索一并处理」 would be false.
    fresh = file_tip("o-fourth")
    with pytest.raises(ServiceError, match="已是「已办结」，不能作为重复依据"):
        tips.transition(fresh.id, "duplicate", editor, duplicate_of=copy.display_no)
    assert db.session.get(Tip, fresh.id).status is TipStatus.SUBMITTED


def test_duplicates_follow_their_original_when_it_becomes_a_duplicate_and_are_triaged_again_if_it_is_rejected(
    people, emulator
):
    editor = people["editor"]
    first, second, third = file_tip("o-first"), file_tip("o-second"), file_tip("o-third")
    tips.transition(third.id, "duplicate", editor, duplicate_of=second.display_no)
    tips.transition(second.id, "dispatch", editor, unit_id=people["district"].id)
    # The tip third was marked against turns out to be a duplicate itself: third follows it to the one handled.
    tips.transition(second.id, "duplicate", editor, duplicate_of=first.display_no)
    assert db.session.get(Tip, third.id).duplicate_of_id == first.id
    # Rejected for a reason about that report: the others are triaged again on their own, not closed with it.
    tips.transition(first.id, "reject", editor, note="照片无法看清")
    for tip in (second, third):
        tip = db.session.get(Tip, tip.id)
        assert tip.status is TipStatus.SUBMITTED and tip.duplicate_of_id is None
        assert "照片无法看清" not in (tip.history[-1].note or "")


def test_a_failed_notice_is_retried_with_backoff_and_sent_once(people, emulator):
    tip = file_tip()
    emulator.hook("fail", {"path": "cgi-bin/message/template/send", "errcode": 45009, "times": 1})
    tips.transition(tip.id, "accept", people["editor"])
    notice = db.session.scalars(sa.select(TipNotice).filter_by(tip_id=tip.id)).one()
    assert notice.state is NoticeState.PENDING and notice.attempts == 1 and notice.last_error.startswith("45009")
    assert notice.next_attempt_at > utcnow() + timedelta(seconds=50)
    assert tips.deliver_due_notices() == 0  # not due yet
    notice.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert tips.deliver_due_notices() == 1
    notice = db.session.get(TipNotice, notice.id, populate_existing=True)
    assert notice.state is NoticeState.SENT and notice.attempts == 2 and notice.recipient == "o-citizen"
    assert tips.deliver_due_notices() == 0
    assert len(_sent(emulator, "o-citizen")) == 1


def test_a_permanent_error_fails_the_notice_without_retry(people, emulator):
    emulator.hook("users", {"users": [{"openid": "o-left", "subscribe": 0}]})
    tip = file_tip("o-left")
    tips.transition(tip.id, "accept", people["editor"])
    notice = db.session.scalars(sa.select(TipNotice).filter_by(tip_id=tip.id)).one()
    assert notice.state is NoticeState.FAILED and "43004" in notice.last_error
    assert db.session.get(Tip, tip.id).status is TipStatus.ACCEPTED  # the tip's own state is unaffected


def test_a_unit_without_a_bound_post_fails_its_request_visibly(people, emulator):
    tip = file_tip()
    bare = factories.unit("闵行分局")
    tips.transition(tip.id, "dispatch", people["editor"], unit_id=bare.id)
    unit_notice = db.session.scalars(sa.select(TipNotice).filter_by(tip_id=tip.id, unit_id=bare.id)).one()
    assert unit_notice.state is NoticeState.FAILED and "A/B 岗" in unit_notice.last_error


def test_b_post_gets_the_request_while_a_is_away(people, emulator):
    deputy = factories.staff("liaison3", "liaison", unit=people["district"], name="孙联络")
    deputy.openid = "o-liaison-sun"
    people["district"].post_b_id = deputy.id
    people["liaison"].away = True
    db.session.commit()
    emulator.hook("users", {"users": [{"openid": "o-liaison-sun"}]})
    tips.transition(file_tip().id, "dispatch", people["editor"], unit_id=people["district"].id)
    assert len(_sent(emulator, "o-liaison-sun")) == 1 and not _sent(emulator, "o-liaison-wang")
    # B not bound to WeChat: the notice goes to A, away or not, rather than to nobody.
    deputy.openid = None
    db.session.commit()
    emulator.hook("users", {"users": [{"openid": "o-liaison-wang"}]})
    tips.transition(file_tip("o-other").id, "dispatch", people["editor"], unit_id=people["district"].id)
    assert len(_sent(emulator, "o-liaison-wang")) == 1


def test_a_notice_waiting_in_a_slow_batch_is_not_sent_again_by_the_next_run(people, emulator, monkeypatch):
    emulator.hook("users", {"users": [{"openid": f"o-s{i}", "subscribe": 1} for i in range(3)]})
    for i in range(3):
        tip = file_tip(f"o-s{i}")
        tips.transition(tip.id, "accept", people["editor"], notify=False)
        payload = tips._citizen_payload(tip, tip.history[-1])
        db.session.add(TipNotice(tip_id=tip.id, kind="citizen", dedupe_key=f"s{i}", payload=payload))
    db.session.commit()
    clock = [utcnow()]
    monkeypatch.setattr(tips, "utcnow", lambda: clock[0])
    real, next_run = tips.send_template, []

    def slow(body):  # WeChat answers each call only at the client's timeout: a batch of 50 takes minutes
        clock[0] += timedelta(minutes=3)
        if clock[0] - started >= timedelta(minutes=6) and not next_run:
            next_run.append(None)
            next_run[0] = tips.deliver_due_notices()  # beat's next run, meanwhile, in another worker
        return real(body)

    started = clock[0]
    monkeypatch.setattr(tips, "send_template", slow)
    tips.deliver_due_notices()
    sent = [t["client_msg_id"] for t in emulator.state()["templates_sent"]]
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 3  # each once: the row on its way was left alone
    assert next_run == [1]  # the row still waiting in the slow batch went with the next run instead


def test_workers_side_by_side_send_each_notice_once(app, committed_db, emulator):
    emulator.hook("users", {"users": [{"openid": f"o-n{i}", "subscribe": 1} for i in range(24)]})
    with app.app_context():
        editor = factories.staff("editor9", "editor")
        for i in range(24):
            tip = file_tip(f"o-n{i}")
            tips.transition(tip.id, "accept", editor, notify=False)
            db.session.add(
                TipNotice(
                    tip_id=tip.id,
                    kind="citizen",
                    dedupe_key=f"t{i}",
                    payload=tips._citizen_payload(tip, tip.history[-1]),
                )
            )
        db.session.commit()

    def work(_: int) -> int:
        with app.app_context():
            try:
                total = 0
                while n := tips.deliver_due_notices(limit=3):
                    total += n
                return total
            finally:
                db.session.remove()

    claimed = _threads(4, work)
    assert sum(claimed) == 24, claimed
    sent = emulator.state()["templates_sent"]
    assert len(sent) == 24 and len({t["client_msg_id"] for t in sent}) == 24
    with app.app_context():
        states = db.session.scalars(sa.select(TipNotice.state)).all()
        assert set(states) == {NoticeState.SENT}


# -- console helpers -------------------------------------------------------------------------------------------------


def test_export_masks_phones_unless_revealed_and_is_audited(people):
    import io

    from openpyxl import load_workbook

    file_tip(phone="13912345678", description='=HYPERLINK("http://x") 占道')
    f = tips.parse_filter({})
    masked = load_workbook(io.BytesIO(tips.export_xlsx(f, None, reveal_phone=False))).active
    rows = list(masked.iter_rows(values_only=True))
    assert rows[0][0] == "编号" and rows[1][11] == "139****5678"
    assert rows[1][10].startswith("'=")  # a formula in a citizen's text stays text
    full = load_workbook(io.BytesIO(tips.export_xlsx(f, None, reveal_phone=True))).active
    assert list(full.iter_rows(values_only=True))[1][11] == "13912345678"
    exports = db.session.scalars(sa.select(AuditLog).filter_by(action="tip.export").order_by(AuditLog.id)).all()
    assert [e.kind.value for e in exports] == ["export", "export"]
    assert exports[0].after["phones"] == "脱敏" and exports[1].after["phones"] == "明文"


def test_overdue_filter_uses_the_sla_hours(people):
    fresh, stale = file_tip(), file_tip("o-late")
    stale.status_changed_at = utcnow() - timedelta(hours=30)
    db.session.commit()
    result = tips.search(tips.parse_filter({"overdue": "1"}), None)
    assert [t.id for t in result.rows] == [stale.id]
    tips.save_sla_hours({"submitted": "48", "accepted": "24", "dispatched": "48", "in_progress": "72"})
    assert tips.search(tips.parse_filter({"overdue": "1"}), None).total == 0
    assert fresh.id in [t.id for t in tips.search(tips.parse_filter({}), None).rows]


def test_liaisons_search_only_their_units(people):
    mine, theirs, unassigned = file_tip("o-1"), file_tip("o-2"), file_tip("o-3")
    tips.transition(mine.id, "dispatch", people["editor"], unit_id=people["district"].id, notify=False)
    tips.transition(theirs.id, "dispatch", people["editor"], unit_id=people["stranger"].unit_id, notify=False)
    from server.services import staff as staff_service

    visible = staff_service.unit_and_descendants(people["district"].id)
    assert [t.id for t in tips.search(tips.parse_filter({}), visible).rows] == [mine.id]
    assert unassigned.id in [t.id for t in tips.search(tips.parse_filter({}), None).rows]


def test_categories_are_editable_and_chat_words_pick_one(db_session):
    assert tips.category_names() == tips.DEFAULT_CATEGORIES
    assert tips.category_from_text("路口有人摆摊卖水果") == "乱设摊"
    assert tips.category_from_text("工地扬尘很大") == "渣土/扬尘"
    assert tips.category_from_text("有人在这里") == "其他"
    cat = next(c for c in tips.categories() if c.name == "家禽")
    tips.save_category(name="家禽饲养", sort=cat.sort, active=False, category=cat)
    assert "家禽饲养" not in tips.category_names() and "家禽饲养" in tips.category_names(active_only=False)
    with pytest.raises(ServiceError, match="已存在"):
        tips.save_category(name="其他")
