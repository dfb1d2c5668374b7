"""Staff binding: issuing codes and QR tickets, binding by scene or code, single use, expiry, uniqueness,
brute-force limits, tag sync (and its failure), non-officers bound without the tag, the tag following role
changes, unbinding, and two scans of one code at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import AuditLog, BindingCode, Staff, utcnow
from server.extensions import db
from server.services import ServiceError, binding
from server.services import staff as staff_service
from tests import factories


@pytest.fixture
def officer(db_session):
    return factories.staff("zhangsan", "officer", unit=factories.unit("浦东分局"), name="张三")


def _followers(emulator, *openids: str) -> None:
    emulator.hook("users", {"openids": list(openids)})


def _tag_members(emulator) -> set[str]:
    state = emulator.state()
    tag_ids = {t["id"] for t in state["tags"] if t["name"] == binding.OFFICER_TAG}
    return {u["openid"] for u in state["users"] if tag_ids & set(u["tagid_list"])}


def _audits(action: str) -> list[AuditLog]:
    return list(db.session.scalars(sa.select(AuditLog).filter_by(action=action).order_by(AuditLog.id)))


def test_issue_makes_a_code_and_a_temporary_str_scene_qr(officer, emulator):
    row = binding.issue(officer.id, hours=24)
    assert binding._looks_like_code(row.code)
    assert len(binding.scene_of(row)) <= 64
    assert row.expires_at - utcnow() == pytest.approx(timedelta(hours=24), abs=timedelta(seconds=5))
    (qr,) = emulator.state()["qrcodes"]
    assert qr["ticket"] == row.qr_ticket
    assert qr["action_name"] == "QR_STR_SCENE"
    assert qr["scene"] == {"scene_str": f"bind_{row.token}"}
    assert qr["expire_at"] - qr["created_at"] == pytest.approx(24 * 3600, abs=5)
    (entry,) = _audits("binding.issue")
    assert entry.after["staff_id"] == officer.id and row.code not in str(entry.after)  # no credential in the log
    image = binding.qr_image(row)
    assert image is not None and image[1] == "image/png" and image[0].startswith(b"\x89PNG")


def test_issue_with_a_shorter_expiry_and_the_limits(officer, emulator):
    row = binding.issue(officer.id, hours=2)
    assert emulator.state()["qrcodes"][0]["expire_at"] - emulator.state()["qrcodes"][0]["created_at"] <= 2 * 3600
    for hours in (0, binding.MAX_HOURS + 1):
        with pytest.raises(ServiceError, match="有效期"):
            binding.issue(officer.id, hours=hours)
    assert binding.status_of(row) == "outstanding"


def test_every_role_gets_codes_but_not_a_disabled_account(db_session, emulator):
    unit = factories.unit("浦东分局")
    for role in ("admin", "editor", "reviewer", "liaison", "officer"):
        person = factories.staff(f"{role}1", role, unit=unit)
        assert binding.status_of(binding.issue(person.id)) == "outstanding"
    gone = factories.staff("gone1", "editor")
    gone.active = False
    db.session.commit()
    with pytest.raises(ServiceError, match="已停用"):
        binding.issue(gone.id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BindingCode)) == 5
    groups = dict(binding.bindable_staff())
    assert [r.value for r in groups] == ["officer", "editor", "admin", "reviewer", "liaison"]
    assert gone.id not in {p.id for people in groups.values() for p in people}


def test_a_new_code_retires_the_officers_older_one(officer, emulator):
    first = binding.issue(officer.id)
    second = binding.issue(officer.id)
    assert binding.status_of(db.session.get(BindingCode, first.id, populate_existing=True)) == "expired"
    assert binding.status_of(second) == "outstanding"
    with pytest.raises(ServiceError, match="过期"):
        binding.bind_by_scene("o-1", binding.scene_of(first))


def test_a_failing_qr_call_keeps_the_code(officer, emulator):
    emulator.hook("fail", {"path": "cgi-bin/qrcode/create", "errcode": 45009})
    row = binding.issue(officer.id)
    assert row.qr_ticket is None and binding.qr_image(row) is None
    assert binding.request_qr(row) and row.qr_ticket


def test_scan_binds_tags_and_audits(officer, emulator):
    _followers(emulator, "o-zhang")
    row = binding.issue(officer.id)
    result = binding.bind_by_scene("o-zhang", binding.scene_of(row))
    assert result.staff.id == officer.id and not result.already
    assert db.session.get(Staff, officer.id, populate_existing=True).openid == "o-zhang"
    assert db.session.get(BindingCode, row.id, populate_existing=True).used_at is not None
    assert _tag_members(emulator) == {"o-zhang"}
    (entry,) = _audits("staff.bind")
    assert (entry.before, entry.after) == ({"openid": None}, {"openid": "o-zhang"})
    assert entry.staff_id == officer.id
    assert binding.tagged_openids() == {"o-zhang"}


@pytest.mark.parametrize("typed", ["绑定 {code}", "绑定{lower}", "绑定：{a}-{b}", "{code}", " {a} {b} "])
def test_typed_code_binds(officer, emulator, typed):
    _followers(emulator, "o-zhang")
    row = binding.issue(officer.id)
    text = typed.format(code=row.code, lower=row.code.lower(), a=row.code[:4], b=row.code[4:])
    result = binding.bind_by_text("o-zhang", text)
    assert result is not None and result.staff.id == officer.id
    assert _tag_members(emulator) == {"o-zhang"}


def test_text_that_is_no_code_is_left_to_other_handlers(officer, emulator):
    assert binding.bind_by_text("o-1", "你好") is None
    assert binding.bind_by_text("o-1", "绑定手机号怎么办") is None
    assert binding.bind_by_text("o-1", "12345678") is None  # digits only: never a code
    assert binding.bind_by_text("o-1", "ABCD2345") is None  # code-shaped but unknown: keywords answer
    with pytest.raises(ServiceError, match="8 位"):
        binding.bind_by_text("o-1", "绑定 123456")


def test_a_used_code_is_refused_and_a_rescan_by_the_same_wechat_is_answered_as_done(officer, emulator):
    _followers(emulator, "o-zhang", "o-other")
    row = binding.issue(officer.id)
    binding.bind_by_scene("o-zhang", binding.scene_of(row))
    with pytest.raises(ServiceError, match="已被使用"):
        binding.bind_by_scene("o-other", binding.scene_of(row))
    with pytest.raises(ServiceError, match="已被使用"):
        binding.bind_by_text("o-other", f"绑定 {row.code}")
    assert binding.bind_by_scene("o-zhang", binding.scene_of(row)).already
    assert db.session.get(Staff, officer.id, populate_existing=True).openid == "o-zhang"
    assert len(_audits("staff.bind")) == 1


def test_an_expired_code_is_refused(officer, emulator):
    row = binding.issue(officer.id)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    with pytest.raises(ServiceError, match="已过期"):
        binding.bind_by_scene("o-zhang", binding.scene_of(row))
    with pytest.raises(ServiceError, match="已过期"):
        binding.bind_by_text("o-zhang", row.code)
    assert db.session.get(Staff, officer.id, populate_existing=True).openid is None


def test_an_unknown_scene_is_refused(officer, emulator):
    with pytest.raises(ServiceError, match="二维码无效"):
        binding.bind_by_scene("o-1", "bind_nosuchtoken")


def test_a_wechat_bound_to_someone_else_is_refused_and_the_code_stays_usable(officer, emulator):
    _followers(emulator, "o-li", "o-zhang")
    li = factories.staff("lisi", "officer", unit=officer.unit, name="李四")
    binding.bind_by_scene("o-li", binding.scene_of(binding.issue(li.id)))
    row = binding.issue(officer.id)
    with pytest.raises(ServiceError, match="已绑定其他人员"):
        binding.bind_by_scene("o-li", binding.scene_of(row))
    assert db.session.get(Staff, officer.id, populate_existing=True).openid is None
    assert db.session.get(BindingCode, row.id, populate_existing=True).used_at is None
    assert binding.bind_by_scene("o-zhang", binding.scene_of(row)).staff.id == officer.id


def test_rebinding_replaces_the_old_wechat_and_untags_it(officer, emulator):
    _followers(emulator, "o-old", "o-new")
    binding.bind_by_scene("o-old", binding.scene_of(binding.issue(officer.id)))
    assert _tag_members(emulator) == {"o-old"}
    binding.bind_by_text("o-new", binding.issue(officer.id).code)
    assert db.session.get(Staff, officer.id, populate_existing=True).openid == "o-new"
    assert _tag_members(emulator) == {"o-new"}
    last = _audits("staff.bind")[-1]
    assert (last.before, last.after) == ({"openid": "o-old"}, {"openid": "o-new"})


def test_a_disabled_account_cannot_bind(officer, emulator):
    row = binding.issue(officer.id)
    officer.active = False
    db.session.commit()
    with pytest.raises(ServiceError, match="已停用"):
        binding.bind_by_scene("o-zhang", binding.scene_of(row))
    assert db.session.get(Staff, officer.id, populate_existing=True).openid is None


def _tag_calls(emulator) -> list[str]:
    return [c["path"] for c in emulator.state()["calls"] if c["path"].startswith("cgi-bin/tags/")]


@pytest.mark.parametrize("role", ["editor", "admin", "reviewer", "liaison"])
def test_non_officers_bind_and_unbind_without_touching_the_tag(db_session, emulator, role):
    _followers(emulator, "o-old", "o-new")
    person = factories.staff("someone", role, unit=factories.unit("浦东分局"), name="周某")
    binding.bind_by_scene("o-old", binding.scene_of(binding.issue(person.id)))
    binding.bind_by_text("o-new", binding.issue(person.id).code)  # a new WeChat replaces the old one
    assert db.session.get(Staff, person.id, populate_existing=True).openid == "o-new"
    binding.unbind(person.id)
    assert db.session.get(Staff, person.id, populate_existing=True).openid is None
    assert _tag_calls(emulator) == [] and _tag_members(emulator) == set()
    assert len(_audits("staff.bind")) == 2 and len(_audits("staff.unbind")) == 1


def test_a_code_issued_to_an_officer_who_became_an_editor_binds_them_untagged(officer, emulator):
    _followers(emulator, "o-zhang")
    row = binding.issue(officer.id)
    staff_service.save_staff(username="zhangsan", name="张三", role="editor", unit_id=officer.unit_id, staff=officer)
    result = binding.bind_by_scene("o-zhang", binding.scene_of(row))
    assert result.staff.role.value == "editor" and "发布失败通知" in binding.describe(result)
    assert _tag_calls(emulator) == []


def test_the_reply_says_what_each_role_will_receive(db_session, emulator):
    unit = factories.unit("浦东分局")
    expected = {
        "officer": ("一线队员", "现场图片"),
        "editor": ("编辑", "值班提醒", "发布失败通知"),
        "admin": ("管理员", "值班提醒", "发布失败通知"),
        "reviewer": ("审核", "值班提醒"),
        "liaison": ("宣传联络员", "线索派发通知"),
    }
    for i, (role, words) in enumerate(expected.items()):
        _followers(emulator, f"o-{i}")
        person = factories.staff(f"{role}1", role, unit=unit, name=f"人员{i}")
        reply = binding.describe(binding.bind_by_text(f"o-{i}", binding.issue(person.id).code))
        assert reply.startswith(f"绑定成功：人员{i}（浦东分局），{words[0]}")
        assert all(w in reply for w in words), reply
        assert ("现场图片" in reply) is (role == "officer")
    assert _tag_members(emulator) == {"o-0"}  # only the officer


def _edit(person: Staff, **changes: object) -> None:
    fields = {"username": person.username, "name": person.name, "role": person.role.value}
    fields |= {"unit_id": person.unit_id, "active": person.active, **changes}
    staff_service.save_staff(staff=person, **fields)  # type: ignore[arg-type]


def test_the_tag_follows_role_changes(officer, emulator):
    _followers(emulator, "o-zhang")
    binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    assert _tag_members(emulator) == {"o-zhang"}
    _edit(officer, role="editor")
    assert _tag_members(emulator) == set()
    before = len(_tag_calls(emulator))
    _edit(officer, name="张三丰")  # an edit that keeps the role makes no tag call
    assert len(_tag_calls(emulator)) == before
    _edit(officer, role="officer")
    assert _tag_members(emulator) == {"o-zhang"}
    _edit(officer, active=False)  # a disabled officer's WeChat loses the menu too
    assert _tag_members(emulator) == set()
    _edit(officer, active=True)
    assert _tag_members(emulator) == {"o-zhang"}


def test_an_unbound_role_change_makes_no_tag_call(officer, emulator):
    _edit(officer, role="editor")
    _edit(officer, role="officer")
    assert _tag_calls(emulator) == []


def test_a_stale_tag_on_a_non_officer_can_be_removed(officer, emulator):
    _followers(emulator, "o-zhang")
    binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchuntagging", "errcode": 45009, "times": 100})
    _edit(officer, role="editor")  # the untag is refused: the edit stands, WeChat still has the tag
    assert db.session.get(Staff, officer.id, populate_existing=True).role.value == "editor"
    assert binding.tagged_openids() == {"o-zhang"}
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchuntagging", "errcode": 45009, "times": 0})
    assert binding.retry_tag(officer.id)
    assert binding.tagged_openids() == set()


def test_guessing_codes_in_chat_is_limited_per_wechat(officer, emulator, redis_client):
    _followers(emulator, "o-guess", "o-zhang")
    row = binding.issue(officer.id)
    guesses = [f"ABCDEF{x}{y}" for x in "23" for y in "23456"]  # shaped like codes, none issued
    assert len(guesses) == binding.ATTEMPT_LIMIT
    for guess in guesses:
        with pytest.raises(ServiceError, match="不正确"):
            binding.bind_by_text("o-guess", f"绑定 {guess}")
    with pytest.raises(ServiceError, match="次数过多"):
        binding.bind_by_text("o-guess", f"绑定 {row.code}")  # even the right code, once over the limit
    with pytest.raises(ServiceError, match="次数过多"):
        binding.bind_by_text("o-guess", row.code)
    assert db.session.get(BindingCode, row.id, populate_existing=True).used_at is None
    assert binding.bind_by_text("o-zhang", row.code) is not None  # another WeChat is not affected


def test_a_failing_tag_call_keeps_the_binding_and_can_be_retried(officer, emulator):
    _followers(emulator, "o-zhang")
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchtagging", "errcode": 45009, "times": 100})
    result = binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    assert result.staff.openid == "o-zhang"
    assert db.session.get(Staff, officer.id, populate_existing=True).openid == "o-zhang"
    calls = [c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/tags/members/batchtagging"]
    assert calls and calls[-1]["errcode"] == 45009  # tried and refused (eager Celery hands retries to a worker)
    assert binding.tagged_openids() == set()
    emulator.hook("fail", {"path": "cgi-bin/tags/members/batchtagging", "errcode": 45009, "times": 0})
    assert binding.retry_tag(officer.id)
    assert binding.tagged_openids() == {"o-zhang"}


def test_a_deleted_tag_is_created_again(officer, emulator, redis_client):
    _followers(emulator, "o-a", "o-b")
    binding.bind_by_scene("o-a", binding.scene_of(binding.issue(officer.id)))
    tag_id = int(redis_client.get(binding.TAG_CACHE_KEY))
    emulator.app.extensions["wechat_emulator"].tags.pop(tag_id)  # someone deleted it in WeChat's admin
    li = factories.staff("lisi", "officer", unit=officer.unit, name="李四")
    binding.bind_by_scene("o-b", binding.scene_of(binding.issue(li.id)))
    assert _tag_members(emulator) == {"o-b"}


def test_unbind_clears_the_openid_untags_and_audits(officer, emulator):
    _followers(emulator, "o-zhang")
    binding.bind_by_scene("o-zhang", binding.scene_of(binding.issue(officer.id)))
    binding.unbind(officer.id)
    assert db.session.get(Staff, officer.id, populate_existing=True).openid is None
    assert _tag_members(emulator) == set()
    (entry,) = _audits("staff.unbind")
    assert (entry.before, entry.after) == ({"openid": "o-zhang"}, {"openid": None})
    with pytest.raises(ServiceError, match="尚未绑定"):
        binding.unbind(officer.id)


def test_revoke_stops_a_code(officer, emulator):
    row = binding.issue(officer.id)
    binding.revoke(row.id)
    assert binding.status_of(db.session.get(BindingCode, row.id, populate_existing=True)) == "expired"
    assert binding.qr_image(row) is None
    with pytest.raises(ServiceError, match="已过期或已被撤销"):
        binding.bind_by_scene("o-zhang", binding.scene_of(row))
    with pytest.raises(ServiceError):
        binding.revoke(row.id)
    assert len(_audits("binding.revoke")) == 1


@pytest.mark.parametrize("same_wechat", [False, True])
def test_simultaneous_scans_of_one_code_bind_once(app, committed_db, emulator, same_wechat):
    openids = ["o-same"] * 8 if same_wechat else [f"o-{i}" for i in range(8)]
    _followers(emulator, *set(openids))
    officer = factories.staff("zhangsan", "officer", unit=factories.unit("浦东分局"), name="张三")
    row = binding.issue(officer.id)
    scene = binding.scene_of(row)
    db.session.remove()
    barrier = threading.Barrier(len(openids))
    outcomes: list[object] = []

    def scan(openid: str) -> None:
        with app.app_context():
            barrier.wait()
            try:
                outcomes.append(binding.bind_by_scene(openid, scene))
            except ServiceError as exc:
                outcomes.append(str(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=scan, args=(o,)) for o in openids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    fresh = [o for o in outcomes if isinstance(o, binding.BindResult) and not o.already]
    assert len(outcomes) == len(openids) and len(fresh) == 1
    others = [o for o in outcomes if o not in fresh]
    if same_wechat:
        assert all(isinstance(o, binding.BindResult) and o.already for o in others)
    else:
        assert others == [binding.USED] * (len(openids) - 1)
    assert len(_audits("staff.bind")) == 1
    assert db.session.get(Staff, officer.id).openid == fresh[0].staff.openid
