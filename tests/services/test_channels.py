"""Channel QR codes: scene rules, the permanent QR from WeChat (emulated over HTTP), replies per scene, figures."""

from __future__ import annotations

import io
import itertools
import threading
from datetime import timedelta

import pytest
import qrcode
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.exc import IntegrityError

from models import AuditLog, Channel, Follower, MatchType, ReplyRule, ReplyType, utcnow
from server.extensions import db
from server.services import ServiceError, channels, replies
from server.wechat.client import SharedTokenClient
from tests.conftest import SQLITE
from tests.services.test_datacube import _event
from tests.services.test_tips import _threads

TEXT = channels.ReplyInput("text", text="开放日报名：https://example.gov.cn/m/events/1")


def make(scene: str = "open_day", name: str = "开放日现场海报", reply: channels.ReplyInput = TEXT) -> Channel:
    return channels.create_channel(name=name, scene=scene, unit_id=None, reply=reply)


def qr_matrix(png: bytes) -> list[list[bool]]:
    """The dark/light modules of a QR image: module size from the top-left finder (7 modules wide), then centres."""
    with Image.open(io.BytesIO(png)) as img:
        gray = img.convert("L")
    width, _ = gray.size
    dark = [[gray.getpixel((x, y)) < 128 for x in range(width)] for y in range(width)]
    start = next(i for i in range(width) if dark[i][i])  # the finder's corner: on the diagonal
    run = next(x for x in range(start, width) if not dark[start][x]) - start
    box = run // 7
    modules = (width - 2 * start) // box
    centre = [start + i * box + box // 2 for i in range(modules)]
    return [[dark[y][x] for x in centre] for y in centre]


def encodes(png: bytes, data: str) -> bool:
    """Whether the image is the QR of exactly `data`: some error correction level and mask draws the same modules."""
    seen = qr_matrix(png)
    for level, mask in itertools.product(range(4), range(8)):
        code = qrcode.QRCode(error_correction=level, border=0, mask_pattern=mask)
        code.add_data(data)
        code.make(fit=True)
        if code.get_matrix() == seen:
            return True
    return False


def test_a_channel_gets_a_permanent_string_scene_qr(db_session, emulator):
    channel = make()
    assert channel.qr_url is None  # saved first, the QR follows the commit
    channels.request_qr(channel)
    created = [q for q in emulator.state()["qrcodes"] if q["scene"].get("scene_str") == "open_day"]
    assert [q["action_name"] for q in created] == ["QR_LIMIT_STR_SCENE"]
    assert "expire_at" not in created[0]  # permanent
    assert (channel.qr_ticket, channel.qr_url) == (created[0]["ticket"], created[0]["url"])
    channels.request_qr(channel)  # has one: WeChat is not asked again (each permanent code counts against 100000)
    assert len(emulator.state()["qrcodes"]) == 1
    actions = [a.action for a in db.session.scalars(sa.select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["rule.create", "channel.create", "channel.qr"]


def test_the_png_is_the_qr_of_wechats_url(db_session, emulator):
    channel = channels.request_qr(make())
    png = channels.qr_png(channel)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert encodes(png, channel.qr_url)
    assert not encodes(png, channel.qr_url + "x")  # the check can tell another code apart


@pytest.mark.parametrize(
    ("scene", "message"),
    [
        ("", "1 到 64 个英文字母"),
        ("开放日", "1 到 64 个英文字母"),
        ("open day", "1 到 64 个英文字母"),
        ("x" * 65, "1 到 64 个英文字母"),
        ("bind_abc", "bind_"),
    ],
)
def test_bad_scenes_are_refused_and_nothing_is_saved(db_session, emulator, scene, message):
    with pytest.raises(ServiceError, match=message):
        make(scene=scene)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Channel)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReplyRule)) == 0
    assert emulator.state()["qrcodes"] == []


def test_a_scene_belongs_to_one_channel(db_session):
    make(scene="poster_1", name="海报一")
    with pytest.raises(ServiceError, match="已被渠道「海报一」使用"):
        make(scene="poster_1", name="海报二")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Channel)) == 1


def test_the_schema_keeps_binding_scenes_out(db_session):
    with pytest.raises(IntegrityError, match="ck_channel_not_binding"):
        with db.session.begin_nested():
            db.session.add(Channel(name="x", scene="bind_abc"))


def test_a_refused_qr_keeps_the_channel_and_a_retry_makes_it(db_session, emulator):
    emulator.hook("fail", {"path": "cgi-bin/qrcode/create", "errcode": 45009})
    channel = make()
    with pytest.raises(ServiceError, match="次数已用完"):
        channels.request_qr(channel)
    stored = db.session.get(Channel, channel.id, populate_existing=True)
    assert stored.qr_url is None and stored.reply_rule is not None  # saved, its reply already answers
    channels.request_qr(stored)
    assert stored.qr_url and stored.qr_url.startswith("http://weixin.qq.com/q/")


def test_an_http_error_status_is_explained(db_session, emulator):
    gateway = {"status": 502, "body": "<html>502</html>", "content_type": "text/html", "work": False}
    emulator.hook("garble", {"path": "cgi-bin/qrcode/create"} | gateway)
    with pytest.raises(ServiceError, match=r"^微信服务器暂时出错（HTTP 502），请稍后再试$"):
        channels.request_qr(make())


def test_an_unreachable_wechat_is_explained(app, db_session, redis_client, monkeypatch):
    channel = make()
    dead = SharedTokenClient("wxdead", "secret", base="http://127.0.0.1:9/", redis=redis_client, timeout=1)
    monkeypatch.setitem(app.extensions, "wechat_client", dead)  # the real client, pointed at a closed port
    with pytest.raises(ServiceError, match=r"^无法连接微信服务器，请稍后再试$"):
        channels.request_qr(channel)
    assert db.session.get(Channel, channel.id).qr_url is None


def test_the_permanent_code_limit_is_explained(db_session, emulator):
    emulator.hook("qr-limit", {"permanent": 0})
    with pytest.raises(ServiceError, match=r"^45029 永久二维码数量已达微信上限（10 万个），无法再生成$"):
        channels.request_qr(make())


def test_a_refusal_without_a_chinese_text_keeps_wechats_reason(db_session, emulator):
    emulator.hook("fail", {"path": "cgi-bin/qrcode/create", "errcode": 40013, "errmsg": "invalid appid rid: 1-2-3"})
    with pytest.raises(ServiceError, match=r"^40013 invalid appid$"):  # it said only 错误码 40013
        channels.request_qr(make())


def test_reply_per_scene_and_with_the_welcome(db_session):
    make(scene="poster_text")
    make(scene="poster_image", name="图片海报", reply=channels.ReplyInput("image", media_id="MEDIA1"))
    make(scene="poster_none", name="无回复海报", reply=channels.ReplyInput())
    assert replies.scene_reply("poster_text").text == TEXT.text
    assert replies.scene_reply("poster_none") is None and replies.scene_reply("unknown") is None

    welcome = replies.welcome_message()
    assert replies.welcome_for_scene("poster_text").text == f"{welcome}\n\n{TEXT.text}"
    assert replies.welcome_for_scene("poster_image").reply_type is ReplyType.IMAGE  # one message: the channel's
    assert replies.welcome_for_scene("poster_none").text == welcome
    assert replies.welcome_for_scene("unknown").text == welcome

    replies.set_text_setting(replies.WELCOME_KEY, "")
    assert replies.welcome_for_scene("poster_text").text == TEXT.text
    assert replies.welcome_for_scene("unknown") is None


def test_welcome_and_channel_text_beyond_2048_bytes_send_the_channel_text(db_session):
    replies.set_text_setting(replies.WELCOME_KEY, "欢" * 600)  # 1800 bytes
    make(reply=channels.ReplyInput("text", text="报" * 100))  # 300 bytes: together beyond WeChat's limit
    assert replies.welcome_for_scene("open_day").text == "报" * 100


def test_editing_the_reply_and_removing_it(db_session):
    channel = make()
    rule_id = channel.reply_rule_id
    renamed = "开放日海报（改）"
    channels.update_channel(channel, name=renamed, unit_id=None, reply=channels.ReplyInput("text", text="新"))
    assert channel.reply_rule_id == rule_id and replies.scene_reply("open_day").text == "新"
    channels.update_channel(channel, name=renamed, unit_id=None, reply=channels.ReplyInput())
    assert channel.reply_rule_id is None and replies.scene_reply("open_day") is None
    assert db.session.get(ReplyRule, rule_id) is None
    update = db.session.scalars(sa.select(AuditLog).filter_by(action="channel.update").order_by(AuditLog.id)).first()
    assert update.before["name"] == "开放日现场海报" and update.after["name"] == "开放日海报（改）"


def test_a_bad_reply_is_refused_before_anything_is_saved(db_session):
    with pytest.raises(ServiceError, match="文本回复的内容不能为空"):
        make(reply=channels.ReplyInput("text", text="  "))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Channel)) == 0


def test_scene_rules_are_kept_out_of_the_auto_reply_pages(db_session):
    channel = make()
    assert channel.reply_rule not in replies.list_rules()
    with pytest.raises(ServiceError, match="渠道二维码"):
        replies.save_rule(name="x", match_type=MatchType.SCENE, pattern="other", reply_text="x")
    with pytest.raises(ServiceError, match="渠道二维码"):
        replies.save_rule(name="x", match_type="contains", pattern="x", reply_text="x", rule=channel.reply_rule)


def _log(openid: str, event: str, key: str, days_ago: float, n: int) -> None:
    db.session.add(_event(openid, event, key, utcnow() - timedelta(days=days_ago), n))


def test_figures_count_followers_and_scans_per_scene(db_session):
    a, b = make(scene="poster_a", name="海报 A"), make(scene="poster_b", name="海报 B", reply=channels.ReplyInput())
    for i, scene in enumerate(["poster_a", "poster_a", "poster_b", "other", None]):
        db.session.add(Follower(openid=f"o-{i}", source_scene=scene))
    _log("o-0", "subscribe", "qrscene_poster_a", 1, 0)
    _log("o-0", "scan", "poster_a", 2, 0)
    _log("o-0", "scan", "poster_a", 2, 1)
    _log("o-1", "subscribe", "qrscene_poster_a", 45, 0)  # older than 30 days: in the total only
    _log("o-2", "scan", "poster_b", 60, 0)
    _log("o-3", "scan", "qrscene_poster_a", 1, 0)  # not a shape WeChat sends for a SCAN
    _log("o-3", "subscribe", "poster_a", 1, 0)  # nor for a scan-to-subscribe
    _log("o-3", "unsubscribe", "", 1, 0)
    db.session.commit()
    rows = {r.channel.scene: (r.followers, r.scans_recent, r.scans_total) for r in channels.list_channels()}
    assert rows == {"poster_a": (2, 3, 4), "poster_b": (1, 0, 1)}
    assert channels.scene_names() == {"poster_a": "海报 A", "poster_b": "海报 B"}
    assert [r.channel for r in channels.list_channels()] == [b, a]  # newest first


@pytest.mark.skipif(SQLITE, reason="races need a database that runs writers side by side")
def test_two_saves_that_add_a_reply_at_once_leave_one_scene_rule(app, committed_db):
    """A double click on 保存 that turns 不回复 into a text reply: both requests read "no rule" before either
    commits. A second rule would be left behind, invisible on both pages, answering scans instead of the edited one."""
    channel_id = make(reply=channels.ReplyInput()).id
    db.session.remove()
    loaded = threading.Barrier(2)

    def save(i: int) -> int:
        with app.app_context():
            try:
                channel = db.session.get(Channel, channel_id)  # held, as the view holds it
                assert channel.reply_rule is None
                loaded.wait(timeout=10)
                reply = channels.ReplyInput("text", text=f"第 {i} 次")
                return channels.update_channel(channel, name=channel.name, unit_id=None, reply=reply).reply_rule_id
            finally:
                db.session.remove()

    rule_ids = _threads(2, save)
    rules = db.session.scalars(sa.select(ReplyRule).filter_by(match_type=MatchType.SCENE)).all()
    assert len(rules) == 1 and rule_ids[0] == rule_ids[1] == rules[0].id, rule_ids
    assert db.session.get(Channel, channel_id, populate_existing=True).reply_rule_id == rules[0].id


@pytest.mark.skipif(SQLITE, reason="races need a database that runs writers side by side")
def test_two_creates_of_one_form_at_once_make_one_channel(app, committed_db):
    def create(i: int) -> int:
        with app.app_context():
            try:
                return make(scene="ch_0a1b2c3d4e").id
            finally:
                db.session.remove()

    ids = _threads(2, create)
    assert ids[0] == ids[1] == db.session.scalars(sa.select(Channel.id)).one(), ids
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReplyRule)) == 1
