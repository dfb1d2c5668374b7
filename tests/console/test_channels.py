"""The channel QR pages: create (QR from the emulated WeChat), refusals in Chinese, a WeChat error and its retry,
editing, the PNG, roles and the nav; the followers page names channels."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from models import AuditLog, Channel, Follower, ReplyRule
from server.extensions import db
from server.services import channels
from tests import factories
from tests.services.test_channels import encodes


def _form(**overrides: str) -> dict[str, str]:
    form = {"name": "开放日现场海报", "scene": "open_day", "unit_id": "", "reply_type": "text",
            "reply_text": "7·15 开放日报名：https://example.gov.cn/m/events/1"}  # fmt: skip
    form.update(overrides)
    return form


def _channel(scene: str = "open_day") -> Channel:
    return db.session.scalars(sa.select(Channel).filter_by(scene=scene)).one()


def _count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Channel)) or 0


@pytest.fixture
def as_editor(console, db_session):
    factories.staff("editor1", "editor", name="编辑甲")
    assert console.login("editor1").status_code == 302
    return console


def test_empty_list_says_what_channels_are_for(as_editor):
    html = as_editor.get("/admin/channels").get_data(as_text=True)
    assert "还没有渠道二维码" in html and "新建渠道二维码" in html
    assert 'href="/admin/channels"' in html  # in the nav, beside 自动回复


def test_create_makes_the_qr_and_lists_the_channel(as_editor, emulator, wechat):
    unit = factories.unit("浦东分局")
    form = as_editor.get("/admin/channels/new").get_data(as_text=True)
    offered = re.search(r'name="scene"[^>]*value="([^"]+)"', form).group(1)
    assert re.fullmatch(r"ch_[0-9a-f]{10}", offered)  # a fresh scene, editable

    res = as_editor.post("/admin/channels/new", _form(unit_id=str(unit.id)))
    channel = _channel()
    assert res.status_code == 302 and res.headers["Location"].endswith(f"/admin/channels/{channel.id}")
    assert channel.qr_url and channel.unit_id == unit.id and channel.created_by_id is not None
    [code] = emulator.state()["qrcodes"]
    assert (code["action_name"], code["scene"]) == ("QR_LIMIT_STR_SCENE", {"scene_str": "open_day"})

    page = as_editor.get(res.headers["Location"]).get_data(as_text=True)
    assert "已创建渠道「开放日现场海报」" in page and "下载二维码 PNG" in page
    listed = as_editor.get("/admin/channels").get_data(as_text=True)
    assert "开放日现场海报" in listed and "<code>open_day</code>" in listed and "浦东分局" in listed
    # The name opens the channel (on a phone the 编辑 column is scrolled out of sight)
    assert f'<td><a href="/admin/channels/{channel.id}">开放日现场海报</a></td>' in listed
    assert 'title="1 到 64 个英文字母、数字、下划线或短横线"' in form  # the browser's own refusal says what fits
    assert wechat.event("o-fan", "SCAN", "open_day")["Content"].startswith("7·15 开放日报名")
    actions = {a.action for a in db.session.scalars(sa.select(AuditLog))}
    assert {"channel.create", "channel.qr", "rule.create"} <= actions


def test_the_png_download_is_the_qr_of_wechats_url(as_editor, emulator):
    as_editor.post("/admin/channels/new", _form())
    channel = _channel()
    res = as_editor.get(f"/admin/channels/{channel.id}/qr.png?download=1")
    assert res.status_code == 200 and res.mimetype == "image/png"
    assert res.headers["Content-Disposition"] == 'attachment; filename="qr-open_day.png"'
    assert encodes(res.data, channel.qr_url)


def test_the_qr_is_drawn_locally_without_asking_wechat_for_an_image(as_editor, emulator):
    as_editor.post("/admin/channels/new", _form())
    emulator.hook("clear-calls")
    as_editor.get(f"/admin/channels/{_channel().id}/qr.png")
    calls = emulator._http.get(emulator.url + "_emulator/calls", timeout=5).json()
    assert calls == []


@pytest.mark.parametrize(
    ("scene", "message"),
    [
        ("开放日", "1 到 64 个英文字母、数字、下划线或短横线"),
        ("open day", "1 到 64 个英文字母、数字、下划线或短横线"),
        ("x" * 65, "1 到 64 个英文字母、数字、下划线或短横线"),
        ("bind_staff01", "不能以「bind_」开头"),
    ],
)
def test_bad_scenes_are_refused_in_chinese(as_editor, emulator, scene, message):
    res = as_editor.post("/admin/channels/new", _form(scene=scene))
    html = res.get_data(as_text=True)
    assert res.status_code == 400 and message in html
    assert "开放日现场海报" in html  # the form comes back as typed
    assert _count() == 0 and emulator.state()["qrcodes"] == []


def test_a_duplicate_scene_is_refused(as_editor, emulator):
    as_editor.post("/admin/channels/new", _form())
    res = as_editor.post("/admin/channels/new", _form(name="另一张海报"))
    assert res.status_code == 400 and "场景值「open_day」已被渠道「开放日现场海报」使用" in res.get_data(as_text=True)
    assert _count() == 1 and len(emulator.state()["qrcodes"]) == 1


def test_a_double_submit_of_the_new_form_lands_on_the_one_channel(as_editor, emulator):
    # The form's generated scene is the submit's key: the second request is the first one again, not a refusal
    # telling the editor to pick another scene (and so print a second channel for the same poster).
    first = as_editor.post("/admin/channels/new", _form(scene="ch_0a1b2c3d4e"))
    again = as_editor.post("/admin/channels/new", _form(scene="ch_0a1b2c3d4e"))
    assert again.status_code == first.status_code == 302
    assert again.headers["Location"] == first.headers["Location"]
    assert _count() == 1 and len(emulator.state()["qrcodes"]) == 1


def test_a_wechat_error_is_shown_the_channel_kept_and_the_qr_retried(as_editor, emulator, wechat):
    emulator.hook("fail", {"path": "cgi-bin/qrcode/create", "errcode": 45009})
    res = as_editor.post("/admin/channels/new", _form(), follow_redirects=True)
    html = res.get_data(as_text=True)
    assert "渠道「开放日现场海报」已保存，但二维码暂未生成：45009 今天调用微信接口的次数已用完" in html
    assert "二维码待生成" in html and "生成二维码" in html
    channel = _channel()
    assert channel.qr_url is None
    assert as_editor.get(f"/admin/channels/{channel.id}/qr.png").status_code == 404
    assert "待生成" in as_editor.get("/admin/channels").get_data(as_text=True)
    assert wechat.event("o-fan", "SCAN", "open_day")["Content"].startswith("7·15")  # answers without its QR

    res = as_editor.post(f"/admin/channels/{channel.id}/qr", follow_redirects=True)
    assert "已生成「开放日现场海报」的二维码" in res.get_data(as_text=True)
    assert db.session.get(Channel, channel.id, populate_existing=True).qr_url
    as_editor.post(f"/admin/channels/{channel.id}/qr")  # a second click: nothing more is asked of WeChat
    assert len(emulator.state()["qrcodes"]) == 1


def test_wechat_unreachable_is_explained(as_editor, app, monkeypatch):
    monkeypatch.setitem(app.config, "WECHAT_API_BASE", "http://127.0.0.1:9/")  # nothing listens on the discard port
    monkeypatch.setitem(app.extensions, "wechat_client", None)  # a client for that base; the old one restored after
    res = as_editor.post("/admin/channels/new", _form(), follow_redirects=True)
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and "二维码暂未生成" in html
    assert _count() == 1


def test_editing_name_unit_and_reply(as_editor, wechat):
    as_editor.post("/admin/channels/new", _form())
    channel = _channel()
    page = as_editor.get(f"/admin/channels/{channel.id}").get_data(as_text=True)
    assert 'value="open_day" readonly' in page and "7·15 开放日报名" in page

    res = as_editor.post(f"/admin/channels/{channel.id}", _form(name="开放日海报（二期）", reply_text="二期报名"))
    assert res.status_code == 302
    assert wechat.event("o-fan", "SCAN", "open_day")["Content"] == "二期报名"
    res = as_editor.post(
        f"/admin/channels/{channel.id}", _form(name="开放日海报（二期）", scene="hijack", reply_type="")
    )
    assert res.status_code == 302
    channel = db.session.get(Channel, channel.id, populate_existing=True)
    assert (channel.name, channel.scene, channel.reply_rule_id) == ("开放日海报（二期）", "open_day", None)
    assert wechat.event("o-fan2", "SCAN", "open_day") is None  # another fan: o-fan's copy would be a retry
    entry = db.session.scalars(sa.select(AuditLog).filter_by(action="channel.update").order_by(AuditLog.id)).first()
    assert entry.after["name"] == "开放日海报（二期）"


def test_a_refused_edit_comes_back_as_typed_and_changes_nothing(as_editor):
    as_editor.post("/admin/channels/new", _form())
    channel = _channel()
    res = as_editor.post(f"/admin/channels/{channel.id}", _form(name="  ", reply_text="新的回复"))
    html = res.get_data(as_text=True)
    assert res.status_code == 400 and "请填写渠道名称" in html and "新的回复" in html
    assert db.session.get(Channel, channel.id, populate_existing=True).name == "开放日现场海报"


def test_the_scene_rule_stays_off_the_auto_reply_pages(as_editor):
    as_editor.post("/admin/channels/new", _form())
    rule = db.session.scalars(sa.select(ReplyRule).filter_by(pattern="open_day")).one()
    assert "open_day" not in as_editor.get("/admin/replies").get_data(as_text=True)
    assert as_editor.get(f"/admin/replies/{rule.id}").status_code == 404
    assert as_editor.post(f"/admin/replies/{rule.id}/delete").status_code == 404
    res = as_editor.post(
        "/admin/replies/new",
        {
            "name": "x",
            "match_type": "scene",
            "pattern": "open_day",
            "reply_type": "text",
            "reply_text": "抢答",
            "priority": "0",
            "enabled": "on",
        },  # fmt: skip
    )
    assert res.status_code == 400 and "渠道二维码的回复请在「渠道二维码」页面设置" in res.get_data(as_text=True)


@pytest.mark.parametrize("role", ["reviewer", "liaison", "officer"])
def test_only_admins_and_editors_manage_channels(console, db_session, role):
    channel = channels.create_channel(name="海报", scene="poster", unit_id=None, reply=channels.ReplyInput())
    factories.staff("someone", role, unit=factories.unit() if role in ("liaison", "officer") else None)
    console.login("someone")
    assert console.get("/admin/channels").status_code == 403
    assert console.get(f"/admin/channels/{channel.id}").status_code == 403
    assert console.get(f"/admin/channels/{channel.id}/qr.png").status_code == 403
    assert console.post("/admin/channels/new", _form()).status_code == 403
    assert console.post(f"/admin/channels/{channel.id}/qr").status_code == 403
    if role != "officer":
        assert 'href="/admin/channels"' not in console.get("/admin/followers").get_data(as_text=True)
    assert _count() == 1


def test_admin_manages_channels_too(as_admin):
    assert as_admin.post("/admin/channels/new", _form()).status_code == 302
    assert as_admin.get("/admin/channels").status_code == 200


def test_the_followers_page_names_channel_scenes(as_editor):
    as_editor.post("/admin/channels/new", _form())
    at = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    db.session.add(Follower(openid="o-poster", source_scene="open_day", subscribed_at=at, first_subscribed_at=at))
    db.session.add(Follower(openid="o-old", source_scene="legacy_2025", last_scene="open_day", subscribed_at=at))
    db.session.commit()
    html = as_editor.get("/admin/followers").get_data(as_text=True)
    assert '<option value="open_day" >开放日现场海报（open_day，1）</option>' in html
    assert "legacy_2025（1）" in html  # an unknown scene as itself
    assert html.count('开放日现场海报 <code class="hint">open_day</code>') == 2  # a source and a last scan
    filtered = as_editor.get("/admin/followers?scene=open_day").get_data(as_text=True)
    assert "o-poster" in filtered and "o-old" not in filtered
    follower = db.session.scalars(sa.select(Follower).filter_by(openid="o-old")).one()
    detail = as_editor.get(f"/admin/followers/{follower.id}").get_data(as_text=True)
    assert "legacy_2025" in detail and '开放日现场海报 <code class="hint">open_day</code>' in detail
    listed = as_editor.get("/admin/channels").get_data(as_text=True)
    assert re.search(r'data-testid="followers">1<', listed)
