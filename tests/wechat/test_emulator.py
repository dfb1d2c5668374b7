"""The WeChat API emulator on its own: WeChat's shapes, error codes and limits, through Flask's test client."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import qrcode
from flask import Flask
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import encode_multipart

from server.wechat.emulator import (
    DATACUBE_EPOCH,
    SIMULATOR_OPENID,
    EmulatorServer,
    EmulatorState,
    create_emulator,
    datacube_articles,
    datacube_rows,
    datacube_user_cumulate,
    datacube_user_summary,
    event_xml,
    make_openid,
)

APPID, SECRET = "wxemulator00000001", "emulator-secret"
TODAY = date(2026, 3, 15)
ALICE, BOB = make_openid("alice"), make_openid("bob")


def _image(fmt: str = "PNG", size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


class Wx:
    """WeChat's API as a client sees it, through the Flask test client."""

    def __init__(self, app: Flask) -> None:
        self.http = app.test_client()
        self.state: EmulatorState = app.extensions["wechat_emulator"]
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.fetch_token()["access_token"]
        return self._token

    def fetch_token(self, **overrides: str) -> dict[str, Any]:
        params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET} | overrides
        return self.http.get("/cgi-bin/token", query_string=params).json

    def get(self, path: str, **params: Any) -> Any:
        res = self.http.get("/" + path, query_string={"access_token": self.token} | params)
        return res.json if res.is_json else res

    def post(self, path: str, body: Any = None, *, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        query = {"access_token": self.token} | (params or {})
        res = self.http.post("/" + path, query_string=query, json=body, **kwargs)
        return res.json if res.is_json else res

    def upload(self, path: str, data: bytes, filename: str, **params: Any) -> Any:
        # encoded in memory: the test client spools big bodies to a temp file it never closes
        boundary, body = encode_multipart({"media": FileStorage(io.BytesIO(data), filename)})
        return self.post(path, params=params, data=body, content_type=f"multipart/form-data; boundary={boundary}")

    def hook(self, name: str, payload: dict[str, Any] | None = None) -> Any:
        res = self.http.post(f"/_emulator/{name}", json=payload or {})
        assert res.status_code == 200, res.data
        return res.json


@pytest.fixture
def app() -> Flask:
    emulator = create_emulator(APPID, SECRET, token_ttl=7200)
    emulator.extensions["wechat_emulator"].set_today(TODAY)
    return emulator


@pytest.fixture
def wx(app: Flask) -> Wx:
    client = Wx(app)
    client.hook("users", {"users": [{"openid": ALICE, "remark": "老王"}, {"openid": BOB}]})
    return client


def _errcode(answer: dict[str, Any]) -> int:
    return answer.get("errcode", 0)


# -- access tokens --------------------------------------------------------------------------------------------


def test_each_token_call_issues_a_new_token_and_the_old_one_lives_five_more_minutes(wx: Wx) -> None:
    first, second = wx.fetch_token(), wx.fetch_token()
    assert first["expires_in"] == 7200 and first["access_token"] != second["access_token"]
    assert wx.state.snapshot()["token_fetches"] == {"token": 2, "stable_token": 0}
    menu_get = {"access_token": first["access_token"]}
    assert wx.http.get("/cgi-bin/menu/get", query_string=menu_get).json["errcode"] == 46003  # still accepted
    wx.state.advance(301)
    assert wx.http.get("/cgi-bin/menu/get", query_string=menu_get).json["errcode"] == 40001
    assert wx.get("cgi-bin/menu/get", access_token=second["access_token"])["errcode"] == 46003


def test_token_errors(wx: Wx) -> None:
    assert wx.fetch_token(appid="wxsomeoneelse")["errcode"] == 40013
    assert wx.fetch_token(secret="wrong")["errcode"] == 40125
    assert wx.fetch_token(grant_type="password")["errcode"] == 40002
    assert wx.state.snapshot()["token_fetches"]["token"] == 0


def test_stable_token_is_reused_until_force_refresh_which_kills_the_old_one(wx: Wx) -> None:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    first = wx.http.post("/cgi-bin/stable_token", json=body).json
    again = wx.http.post("/cgi-bin/stable_token", json=body | {"force_refresh": False}).json
    assert again["access_token"] == first["access_token"] and 7100 < again["expires_in"] <= 7200
    assert wx.state.snapshot()["token_fetches"]["stable_token"] == 1
    forced = wx.http.post("/cgi-bin/stable_token", json=body | {"force_refresh": True}).json
    assert forced["access_token"] != first["access_token"]
    assert wx.get("cgi-bin/menu/get", access_token=first["access_token"])["errcode"] == 40001
    assert wx.get("cgi-bin/menu/get", access_token=forced["access_token"])["errcode"] == 46003
    assert wx.http.post("/cgi-bin/stable_token", json=body | {"secret": "x"}).json["errcode"] == 40125
    assert wx.http.post("/cgi-bin/stable_token", data="{not json").json["errcode"] == 47001


def test_missing_unknown_and_expired_tokens(app: Flask) -> None:
    wx = Wx(create_emulator(APPID, SECRET, token_ttl=60))
    assert wx.http.get("/cgi-bin/menu/get").json["errcode"] == 41001
    assert wx.get("cgi-bin/menu/get", access_token="made-up")["errcode"] == 40001
    assert wx.get("cgi-bin/menu/get")["errcode"] == 46003
    wx.state.advance(61)
    answer = wx.get("cgi-bin/menu/get")
    assert answer["errcode"] == 42001 and answer["errmsg"].startswith("access_token expired")


def test_expire_tokens_hook_invalidates_every_token(wx: Wx) -> None:
    old = wx.token
    wx.hook("expire-tokens")
    assert wx.get("cgi-bin/menu/get")["errcode"] == 40001
    wx.hook("expire-tokens", {"mode": "expire"})
    fresh = wx.fetch_token()["access_token"]
    assert fresh != old and wx.get("cgi-bin/menu/get", access_token=fresh)["errcode"] == 46003


def test_jsapi_ticket_needs_a_token_and_type_jsapi(wx: Wx) -> None:
    answer = wx.get("cgi-bin/ticket/getticket", type="jsapi")
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok" and answer["expires_in"] == 7200
    assert len(answer["ticket"]) == 86
    assert wx.get("cgi-bin/ticket/getticket", type="wx_card")["errcode"] == 40097
    assert wx.get("cgi-bin/ticket/getticket")["errcode"] == 40097
    assert wx.http.get("/cgi-bin/ticket/getticket", query_string={"type": "jsapi"}).json["errcode"] == 41001
    wx.hook("expire-tokens")
    assert wx.get("cgi-bin/ticket/getticket", type="jsapi")["errcode"] == 40001
    state = wx.state.snapshot()
    assert state["ticket_fetches"] == 1 and state["jsapi_tickets"] == [answer["ticket"]]


# -- menus ----------------------------------------------------------------------------------------------------


MENU = {
    "button": [
        {"type": "click", "name": "联系我们", "key": "CONTACT"},
        {
            "name": "办事指南",
            "sub_button": [
                {"type": "view", "name": "占道经营许可", "url": "https://example.gov.cn/a"},
                {"type": "scancode_push", "name": "扫码举报", "key": "SCAN"},
            ],
        },
    ]
}


def test_menu_create_get_delete(wx: Wx) -> None:
    assert wx.post("cgi-bin/menu/create", MENU) == {"errcode": 0, "errmsg": "ok"}
    menu = wx.get("cgi-bin/menu/get")
    assert "conditionalmenu" not in menu
    buttons = menu["menu"]["button"]
    assert buttons[0] == {"type": "click", "name": "联系我们", "key": "CONTACT", "sub_button": []}
    assert buttons[1]["name"] == "办事指南" and "type" not in buttons[1]
    assert buttons[1]["sub_button"][0]["url"] == "https://example.gov.cn/a"
    info = wx.get("cgi-bin/get_current_selfmenu_info")
    assert info["is_menu_open"] == 1
    assert info["selfmenu_info"]["button"][1]["sub_button"]["list"][1] == {
        "type": "scancode_push",
        "name": "扫码举报",
        "key": "SCAN",
    }
    assert wx.get("cgi-bin/menu/delete")["errcode"] == 0
    assert wx.get("cgi-bin/menu/get")["errcode"] == 46003


@pytest.mark.parametrize(
    ("buttons", "errcode"),
    [
        ([{"type": "click", "name": f"b{i}", "key": "K"} for i in range(4)], 40016),
        ([], 40016),
        ([{"type": "click", "name": "城管执法局ab", "key": "K"}], 40018),  # 5 hanzi + 2 = 17 bytes
        ([{"type": "view", "name": "网站"}], 40020),
        ([{"type": "view", "name": "网站", "url": "ftp://example.com/"}], 40055),
        ([{"type": "click", "name": "点我"}], 40019),
        ([{"type": "clack", "name": "点我", "key": "K"}], 40017),
        ([{"name": "更多", "sub_button": [{"type": "click", "name": f"s{i}", "key": "K"} for i in range(6)]}], 40023),
        ([{"name": "更多", "sub_button": [{"type": "view", "name": "网站"}]}], 40027),
        ([{"name": "更多", "sub_button": [{"type": "click", "name": "字" * 21, "key": "K"}]}], 40025),  # 63 bytes
        ([{"type": "media_id", "name": "图片", "media_id": "nope"}], 40007),
        ([{"type": "miniprogram", "name": "小程序", "url": "https://example.com/"}], 47001),
    ],
)
def test_menu_is_checked_like_wechat(wx: Wx, buttons: list[dict[str, Any]], errcode: int) -> None:
    assert wx.post("cgi-bin/menu/create", {"button": buttons})["errcode"] == errcode
    assert wx.state.snapshot()["menu"] is None


def test_menu_name_limits_are_bytes(wx: Wx) -> None:
    top = {"type": "click", "name": "城管执法局a", "key": "K"}  # 16 bytes: the most a top-level name holds
    sub = {"type": "click", "name": "字" * 20, "key": "K2"}  # 60 bytes
    assert wx.post("cgi-bin/menu/create", {"button": [top, {"name": "更多", "sub_button": [sub]}]})["errcode"] == 0


def test_conditional_menus(wx: Wx) -> None:
    conditional = {"button": MENU["button"][:1], "matchrule": {"tag_id": "2"}}
    assert wx.post("cgi-bin/menu/addconditional", conditional)["errcode"] == 65303  # no default menu yet
    wx.post("cgi-bin/menu/create", MENU)
    assert wx.post("cgi-bin/menu/addconditional", conditional | {"matchrule": {"city": ""}})["errcode"] == 65304
    menuid = wx.post("cgi-bin/menu/addconditional", conditional)["menuid"]
    assert isinstance(menuid, str)
    shown = wx.get("cgi-bin/menu/get")["conditionalmenu"]
    assert shown == [
        {"button": [MENU["button"][0] | {"sub_button": []}], "matchrule": {"tag_id": "2"}, "menuid": int(menuid)}
    ]
    assert wx.post("cgi-bin/menu/delconditional", {"menuid": "1"})["errcode"] == 65301
    assert wx.post("cgi-bin/menu/delconditional", {"menuid": menuid})["errcode"] == 0
    assert "conditionalmenu" not in wx.get("cgi-bin/menu/get")


# -- users and tags -------------------------------------------------------------------------------------------


def test_user_info_has_no_profile_since_2021(wx: Wx) -> None:
    info = wx.get("cgi-bin/user/info", openid=ALICE, lang="zh_CN")
    assert info["subscribe"] == 1 and info["openid"] == ALICE and info["remark"] == "老王"
    assert set(info) == {
        "subscribe",
        "openid",
        "language",
        "subscribe_time",
        "remark",
        "groupid",
        "tagid_list",
        "subscribe_scene",
        "qr_scene",
        "qr_scene_str",
    }
    assert wx.get("cgi-bin/user/info", openid=make_openid("nobody"))["errcode"] == 40003
    wx.hook("users", {"users": [{"openid": BOB, "subscribe": 0}]})
    assert wx.get("cgi-bin/user/info", openid=BOB) == {"subscribe": 0, "openid": BOB, "tagid_list": []}
    batch = wx.post("cgi-bin/user/info/batchget", {"user_list": [{"openid": ALICE}, {"openid": BOB}]})
    assert [u["subscribe"] for u in batch["user_info_list"]] == [1, 0]


def test_user_get_pages_followers_only(wx: Wx) -> None:
    wx.hook("users", {"openids": [make_openid(f"u{i}") for i in range(3)]})
    wx.hook("users", {"users": [{"openid": BOB, "subscribe": 0}]})
    wx.state.user_page_size = 3
    first = wx.get("cgi-bin/user/get")
    assert first["total"] == 4 and first["count"] == 3
    assert first["data"]["openid"] == [ALICE, make_openid("u0"), make_openid("u1")]
    second = wx.get("cgi-bin/user/get", next_openid=first["next_openid"])
    assert second["data"]["openid"] == [make_openid("u2")]
    last = wx.get("cgi-bin/user/get", next_openid=second["next_openid"])
    assert last == {"total": 4, "count": 0, "next_openid": ""}


def test_remark_is_limited_to_30_bytes(wx: Wx) -> None:
    assert wx.post("cgi-bin/user/info/updateremark", {"openid": BOB, "remark": "张" * 10})["errcode"] == 0
    assert wx.post("cgi-bin/user/info/updateremark", {"openid": BOB, "remark": "张" * 11})["errcode"] == 40092
    assert wx.get("cgi-bin/user/info", openid=BOB)["remark"] == "张" * 10


def test_tags(wx: Wx) -> None:
    tag = wx.post("cgi-bin/tags/create", {"tag": {"name": "志愿者"}})["tag"]
    assert tag == {"id": 100, "name": "志愿者"}
    assert wx.post("cgi-bin/tags/create", {"tag": {"name": "志愿者"}})["errcode"] == 45157
    assert wx.post("cgi-bin/tags/create", {"tag": {"name": "长" * 11}})["errcode"] == 45158  # 33 bytes
    too_many = [make_openid(f"x{i}") for i in range(51)]
    assert wx.post("cgi-bin/tags/members/batchtagging", {"openid_list": too_many, "tagid": 100})["errcode"] == 40032
    assert wx.post("cgi-bin/tags/members/batchtagging", {"openid_list": [ALICE], "tagid": 999})["errcode"] == 45159
    assert wx.post("cgi-bin/tags/members/batchtagging", {"openid_list": [ALICE, BOB], "tagid": 100})["errcode"] == 0
    assert wx.post("cgi-bin/tags/getidlist", {"openid": ALICE}) == {"tagid_list": [100]}
    assert {"id": 100, "name": "志愿者", "count": 2} in wx.get("cgi-bin/tags/get")["tags"]
    wx.post("cgi-bin/tags/members/batchuntagging", {"openid_list": [BOB], "tagid": 100})
    assert wx.post("cgi-bin/user/tag/get", {"tagid": 100})["data"]["openid"] == [ALICE]
    assert wx.post("cgi-bin/tags/delete", {"tag": {"id": 2}})["errcode"] == 45058


# -- QR codes -------------------------------------------------------------------------------------------------


def test_qrcode_create_and_showqrcode_png(wx: Wx) -> None:
    temporary = wx.post(
        "cgi-bin/qrcode/create",
        {
            "expire_seconds": 3_000_000,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": "report_42"}},
        },
    )
    assert temporary["expire_seconds"] == 2592000 and temporary["url"].startswith("http://weixin.qq.com/q/")
    permanent = wx.post(
        "cgi-bin/qrcode/create", {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 7}}}
    )
    assert set(permanent) == {"ticket", "url"}
    res = wx.http.get("/cgi-bin/showqrcode", query_string={"ticket": temporary["ticket"]})
    assert res.status_code == 200 and res.mimetype == "image/png"
    expected = io.BytesIO()
    qrcode.make(temporary["url"]).save(expected)
    with Image.open(io.BytesIO(res.data)) as got, Image.open(expected) as want:
        assert got.size == want.size and got.tobytes() == want.tobytes()  # the QR of exactly that url
    assert wx.http.get("/cgi-bin/showqrcode", query_string={"ticket": "gQnope"}).status_code == 404
    bad = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 65}}}
    assert wx.post("cgi-bin/qrcode/create", bad)["errcode"] == 40053
    assert (
        wx.post(
            "cgi-bin/qrcode/create", {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100001}}}
        )["errcode"]
        == 40053
    )
    wx.state.advance(2592001)
    assert wx.http.get("/cgi-bin/showqrcode", query_string={"ticket": temporary["ticket"]}).status_code == 404
    assert wx.http.get("/cgi-bin/showqrcode", query_string={"ticket": permanent["ticket"]}).status_code == 200


def test_permanent_string_scene_codes_as_channel_qrs_make_them(wx: Wx) -> None:
    def create(body: dict[str, Any]) -> dict[str, Any]:
        return wx.post("cgi-bin/qrcode/create", body)

    scene = {"scene": {"scene_str": "open_day-2026_poster"}}
    code = create({"action_name": "QR_LIMIT_STR_SCENE", "action_info": scene})
    assert set(code) == {"ticket", "url"} and code["url"].startswith("http://weixin.qq.com/q/")  # no expiry
    assert wx.state.snapshot()["qrcodes"][-1]["scene"] == {"scene_str": "open_day-2026_poster"}
    assert (
        _errcode(create({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 64}}})) == 0
    )
    refused = [
        {"action_name": "QR_LIMIT_STRING_SCENE", "action_info": scene},  # no such action
        {"action_info": scene},  # no action at all
        {"action_name": "QR_LIMIT_STR_SCENE"},  # no scene
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {}}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_id": 7}}},  # an id for a string scene
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": ""}}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 65}}},
    ]
    assert [_errcode(create(body)) for body in refused] == [40053] * len(refused)

    wx.hook("qr-limit", {"permanent": 2})  # an account's permanent codes are counted (WeChat allows 100000)
    assert _errcode(create({"action_name": "QR_LIMIT_STR_SCENE", "action_info": scene})) == 45029
    temporary = {"action_name": "QR_STR_SCENE", "expire_seconds": 60, "action_info": scene}
    assert _errcode(create(temporary)) == 0  # temporary codes do not count


# -- template messages ----------------------------------------------------------------------------------------


def test_template_send_is_recorded_and_pushes_a_job_finish_event(wx: Wx) -> None:
    data = {"thing1": {"value": "占道经营投诉已受理"}, "time2": {"value": "2026-03-15 10:00"}}
    answer = wx.post(
        "cgi-bin/message/template/send",
        {"touser": ALICE, "template_id": "TPL-1", "data": data, "url": "https://example.gov.cn/c/1"},
    )
    assert answer["errcode"] == 0 and isinstance(answer["msgid"], int)
    sent = wx.state.snapshot()["templates_sent"]
    assert [(m["msgid"], m["touser"], m["template_id"], m["data"]) for m in sent] == [
        (answer["msgid"], ALICE, "TPL-1", data)
    ]
    event = wx.state.snapshot()["push_events"][-1]
    assert event["event"]["Event"] == "TEMPLATESENDJOBFINISH" and event["event"]["MsgID"] == answer["msgid"]
    assert f"<MsgID>{answer['msgid']}</MsgID>" in event["xml"]


def test_template_send_errors(wx: Wx) -> None:
    data = {"thing1": {"value": "ok"}}
    send = lambda body: wx.post("cgi-bin/message/template/send", body)["errcode"]  # noqa: E731
    assert send({"touser": make_openid("stranger"), "template_id": "T", "data": data}) == 40003
    assert send({"touser": ALICE, "data": data}) == 40037
    assert send({"touser": ALICE, "template_id": "T", "data": {"thing1": {"value": "字" * 21}}}) == 47003
    wx.hook("users", {"users": [{"openid": BOB, "subscribe": 0}]})
    assert send({"touser": BOB, "template_id": "T", "data": data}) == 43004
    wx.hook("templates", {"templates": [{"template_id": "KNOWN", "title": "办理进度通知"}]})
    assert send({"touser": ALICE, "template_id": "T", "data": data}) == 40037
    assert send({"touser": ALICE, "template_id": "KNOWN", "data": data}) == 0
    assert len(wx.state.snapshot()["templates_sent"]) == 1


# -- customer-service messages --------------------------------------------------------------------------------


def _text(to: str, content: str = "您的照片未能保存，请重新发送。") -> dict[str, Any]:
    return {"touser": to, "msgtype": "text", "text": {"content": content}}


def test_custom_send_reaches_a_user_only_within_48_hours_of_their_message_and_is_recorded(wx: Wx) -> None:
    send = lambda body: wx.post("cgi-bin/message/custom/send", body)  # noqa: E731
    answer = send(_text(ALICE))
    assert answer["errcode"] == 45015 and answer["errmsg"].startswith("response out of time limit")
    wx.hook("interaction", {"openid": ALICE})
    assert send(_text(ALICE, "照片未能保存")) == {"errcode": 0, "errmsg": "ok"}
    [sent] = wx.state.snapshot()["custom_sent"]
    assert (sent["touser"], sent["msgtype"], sent["text"]) == (ALICE, "text", {"content": "照片未能保存"})
    assert wx.state.snapshot()["interactions"][ALICE] == int(wx.state.now())
    # 48 hours after the user's last message the window has closed; a new message opens it again.
    wx.hook("interaction", {"openid": ALICE, "at": wx.state.now() - 48 * 3600 - 1})
    assert send(_text(ALICE))["errcode"] == 45015
    wx.hook("interaction", {"openid": ALICE, "at": wx.state.now() - 47 * 3600})
    assert send(_text(ALICE))["errcode"] == 0
    # Unfollowed: nothing reaches them, whenever they wrote.
    wx.hook("interaction", {"openid": BOB})
    wx.hook("users", {"users": [{"openid": BOB, "subscribe": 0}]})
    assert send(_text(BOB))["errcode"] == 45015
    assert len(wx.state.snapshot()["custom_sent"]) == 2


def test_custom_send_allows_five_messages_until_the_user_writes_again(wx: Wx) -> None:
    wx.hook("interaction", {"openid": ALICE})
    codes = [wx.post("cgi-bin/message/custom/send", _text(ALICE, f"第 {n} 条"))["errcode"] for n in range(6)]
    assert codes == [0, 0, 0, 0, 0, 45047]
    wx.hook("interaction", {"openid": ALICE})
    assert wx.post("cgi-bin/message/custom/send", _text(ALICE))["errcode"] == 0
    assert len(wx.state.snapshot()["custom_sent"]) == 6


def test_custom_send_errors(wx: Wx) -> None:
    wx.hook("interaction", {"openid": ALICE})
    send = lambda body: wx.post("cgi-bin/message/custom/send", body)["errcode"]  # noqa: E731
    assert send(_text(make_openid("stranger"))) == 40003
    assert send({"msgtype": "text", "text": {"content": "x"}}) == 41009
    assert send({"touser": ALICE, "msgtype": "fax", "fax": {}}) == 40008
    assert send({"touser": ALICE, "msgtype": "text"}) == 47001
    assert send(_text(ALICE, " ")) == 44004
    assert send(_text(ALICE, "字" * 683)) == 45002  # 2049 bytes
    assert send(_text(ALICE, "字" * 682)) == 0
    assert wx.http.post("/cgi-bin/message/custom/send", json=_text(ALICE)).json["errcode"] == 41001
    assert len(wx.state.snapshot()["custom_sent"]) == 1


# -- media ----------------------------------------------------------------------------------------------------


def test_media_upload_and_get(wx: Wx) -> None:
    png = _image("PNG")
    answer = wx.upload("cgi-bin/media/upload", png, "photo.png", type="image")
    assert answer["type"] == "image" and set(answer) == {"type", "media_id", "created_at"}
    res = wx.get("cgi-bin/media/get", media_id=answer["media_id"])
    assert res.data == png and res.mimetype == "image/png"
    assert wx.get("cgi-bin/media/get", media_id="unknown")["errcode"] == 40007
    thumb = wx.upload("cgi-bin/media/upload", _image("JPEG"), "t.jpg", type="thumb")
    assert "thumb_media_id" in thumb and "media_id" not in thumb
    wx.state.advance(3 * 86400)
    wx._token = None  # three days outlive the token too
    assert wx.get("cgi-bin/media/get", media_id=answer["media_id"])["errcode"] == 40007  # temporary: 3 days


@pytest.mark.parametrize(
    ("kind", "data", "filename", "errcode"),
    [
        ("thumb", b"\xff\xd8" + b"\0" * (64 << 10), "t.jpg", 40012),
        ("image", b"\0" * ((10 << 20) + 1), "big.jpg", 40009),
        ("voice", b"#!AMR" + b"\0" * (2 << 20), "v.amr", 40010),
        ("image", b"this is not an image", "fake.png", 40005),
        ("image", _image("PNG"), "photo", 40005),  # WeChat goes by the extension: none, no upload
        ("thumb", _image("PNG"), "t.jpg", 40005),  # thumbs are JPEG only
        ("voice", b"RIFF....WAVE", "v.mp3", 40005),
        ("file", _image("PNG"), "x.png", 40004),
    ],
)
def test_media_upload_limits(wx: Wx, kind: str, data: bytes, filename: str, errcode: int) -> None:
    assert wx.upload("cgi-bin/media/upload", data, filename, type=kind)["errcode"] == errcode
    assert wx.state.snapshot()["media"] == []


def test_media_field_is_required(wx: Wx) -> None:
    assert wx.post("cgi-bin/media/upload", params={"type": "image"}, data={"file": "x"})["errcode"] == 41005


def test_media_hook_stands_for_a_photo_a_user_sent(wx: Wx) -> None:
    jpeg = _image("JPEG")
    res = wx.http.post("/_emulator/media", data={"media_id": "sim-1", "media": (io.BytesIO(jpeg), "p.jpg")})
    assert res.json == {"media_id": "sim-1"}
    got = wx.get("cgi-bin/media/get", media_id="sim-1")
    assert got.data == jpeg and got.mimetype == "image/jpeg"
    public = wx.http.get("/_emulator/media/sim-1")  # the PicUrl of the image message
    assert public.status_code == 200 and public.data == jpeg
    assert wx.state.put_media(b"ID3abc", media_type="voice").startswith("") and len(wx.state.media) == 2


def test_uploadimg_and_permanent_material(wx: Wx) -> None:
    url = wx.upload("cgi-bin/media/uploadimg", _image("PNG"), "in-article.png")["url"]
    served = wx.http.get(urlsplit(url).path)
    assert served.status_code == 200 and served.data == _image("PNG")
    assert wx.upload("cgi-bin/media/uploadimg", _image("GIF"), "a.gif")["errcode"] == 40005
    assert wx.upload("cgi-bin/media/uploadimg", b"\xff\xd8" + b"\0" * (1 << 20), "a.jpg")["errcode"] == 40009
    added = wx.upload("cgi-bin/material/add_material", _image("JPEG"), "cover.jpg", type="image")
    assert set(added) == {"media_id", "url"}
    assert wx.post("cgi-bin/material/get_material", {"media_id": added["media_id"]}).data == _image("JPEG")
    assert wx.get("cgi-bin/material/get_materialcount")["image_count"] == 1
    assert wx.post("cgi-bin/material/del_material", {"media_id": added["media_id"]})["errcode"] == 0
    assert wx.post("cgi-bin/material/get_material", {"media_id": added["media_id"]})["errcode"] == 40007


# -- drafts and publishing ------------------------------------------------------------------------------------


def _cover(wx: Wx) -> str:
    return wx.upload("cgi-bin/material/add_material", _image("JPEG"), "cover.jpg", type="image")["media_id"]


def _article(wx: Wx, **overrides: Any) -> dict[str, Any]:
    return {
        "title": "市容环境整治月启动",
        "author": "城管局",
        "content": "<p>本月起开展整治。</p>",
        "thumb_media_id": _cover(wx),
    } | overrides


def test_draft_publish_flow(wx: Wx) -> None:
    inline = wx.upload("cgi-bin/media/uploadimg", _image("PNG"), "in.png")["url"]
    content = f'<p>现场</p><img src="{inline}"><img src="https://elsewhere.example/x.png"><script>x()</script>'
    draft_id = wx.post("cgi-bin/draft/add", {"articles": [_article(wx, content=content), _article(wx)]})["media_id"]
    kept = wx.post("cgi-bin/draft/get", {"media_id": draft_id})["news_item"][0]["content"]
    assert kept == f'<p>现场</p><img src="{inline}">'  # external images and scripts are dropped, as WeChat does
    submitted = wx.post("cgi-bin/freepublish/submit", {"media_id": draft_id})
    assert submitted["errcode"] == 0 and isinstance(submitted["msg_data_id"], int)
    job = wx.post("cgi-bin/freepublish/get", {"publish_id": submitted["publish_id"]})
    assert job["publish_status"] == 0 and job["fail_idx"] == []
    assert job["article_detail"]["count"] == 2
    urls = [item["article_url"] for item in job["article_detail"]["item"]]
    event = wx.state.snapshot()["push_events"][-1]["event"]
    assert event["Event"] == "PUBLISHJOBFINISH"
    assert event["PublishEventInfo"]["publish_id"] == submitted["publish_id"]
    assert event["PublishEventInfo"]["article_id"] == job["article_id"]
    assert [i["article_url"] for i in event["PublishEventInfo"]["article_detail"]["item"]] == urls
    assert wx.post("cgi-bin/draft/get", {"media_id": draft_id})["errcode"] == 40007  # published: out of drafts
    news = wx.post("cgi-bin/freepublish/getarticle", {"article_id": job["article_id"]})["news_item"]
    assert [n["title"] for n in news] == ["市容环境整治月启动"] * 2 and news[0]["url"] == urls[0]
    page = wx.http.get(urlsplit(urls[0]).path, query_string=urlsplit(urls[0]).query)
    assert "市容环境整治月启动" in page.get_data(as_text=True)
    listed = wx.post("cgi-bin/freepublish/batchget", {"offset": 0, "count": 20, "no_content": 1})
    assert listed["item"][0]["article_id"] == job["article_id"]  # newest first: then the history the datacube knows
    assert listed["total_count"] > listed["item_count"] == 20
    assert all("content" not in n for item in listed["item"] for n in item["content"]["news_item"])
    after = wx.post("cgi-bin/freepublish/batchget", {"offset": 1, "count": 20, "no_content": 1})["item"]
    assert after[:19] == listed["item"][1:]  # pages follow on
    assert wx.post("cgi-bin/freepublish/getarticle", {"article_id": "nope"})["errcode"] == 53600


def test_draft_is_checked_like_wechat(wx: Wx) -> None:
    temporary = wx.upload("cgi-bin/media/upload", _image("JPEG"), "t.jpg", type="image")["media_id"]
    add = lambda articles: wx.post("cgi-bin/draft/add", {"articles": articles})["errcode"]  # noqa: E731
    assert add([_article(wx, thumb_media_id=temporary)]) == 40007  # the cover must be permanent material
    assert add([]) == 44003
    assert add([_article(wx)] * 9) == 45008
    assert add([_article(wx, title="标" * 33)]) == 45003
    assert add([_article(wx, author="作" * 17)]) == 45110
    assert add([_article(wx, content="")]) == 44004
    assert wx.state.snapshot()["drafts"] == []


def test_publish_failure_and_slow_publish_hooks(wx: Wx) -> None:
    wx.hook("publish-outcome", {"publish_status": 3, "fail_idx": [1]})
    draft_id = wx.post("cgi-bin/draft/add", {"articles": [_article(wx)]})["media_id"]
    failed = wx.post("cgi-bin/freepublish/submit", {"media_id": draft_id})["publish_id"]
    assert wx.post("cgi-bin/freepublish/get", {"publish_id": failed}) == {
        "publish_id": failed,
        "publish_status": 3,
        "fail_idx": [1],
    }
    wx.hook("publish-outcome", {"publish_status": 1})
    slow = wx.post("cgi-bin/freepublish/submit", {"media_id": draft_id})["publish_id"]
    assert wx.post("cgi-bin/freepublish/get", {"publish_id": slow})["publish_status"] == 1
    wx.hook("finish-publish", {"publish_id": slow})
    assert wx.post("cgi-bin/freepublish/get", {"publish_id": slow})["publish_status"] == 0
    assert [e["event"]["PublishEventInfo"]["publish_status"] for e in wx.state.snapshot()["push_events"]] == [3, 0]


def test_delay_hook_answers_late_after_the_work_without_holding_up_other_calls(wx: Wx) -> None:
    import threading
    import time

    import requests

    state = wx.state
    with EmulatorServer(wx.http.application) as server:  # type: ignore[attr-defined]
        http = requests.Session()
        token = http.get(
            server.url + "cgi-bin/token",
            params={"grant_type": "client_credential", "appid": APPID, "secret": SECRET},
            timeout=5,
        ).json()["access_token"]
        draft_id = wx.post("cgi-bin/draft/add", {"articles": [_article(wx)]})["media_id"]
        http.post(server.url + "_emulator/delay", json={"path": "/cgi-bin/freepublish/submit", "seconds": 1.5})
        answers: list[dict[str, Any]] = []

        def submit() -> None:
            url = server.url + "cgi-bin/freepublish/submit"
            answers.append(http.post(url, params={"access_token": token}, json={"media_id": draft_id}).json())

        started = time.monotonic()
        waiting = threading.Thread(target=submit)
        waiting.start()
        time.sleep(0.5)
        (job,) = state.snapshot()["publishes"]  # the work is done while the answer is still on its way
        assert job["publish_status"] == 0 and not answers
        assert requests.get(server.url + "_emulator/state", timeout=1).ok  # others are not held up meanwhile
        waiting.join()
        assert time.monotonic() - started >= 1.5 and answers[0]["publish_id"] == job["publish_id"]
        (call,) = [c for c in state.snapshot()["calls"] if c["path"] == "cgi-bin/freepublish/submit"]
        assert call["delayed_s"] == 1.5 and isinstance(call["client_port"], int)
        assert state.snapshot()["delays"] == {}  # once by default: the next submit answers at once
        draft_id = wx.post("cgi-bin/draft/add", {"articles": [_article(wx)]})["media_id"]
        started = time.monotonic()
        submit()
        assert time.monotonic() - started < 1


def test_freepublish_get_has_a_daily_budget_of_100(wx: Wx) -> None:
    draft_id = wx.post("cgi-bin/draft/add", {"articles": [_article(wx)]})["media_id"]
    publish_id = wx.post("cgi-bin/freepublish/submit", {"media_id": draft_id})["publish_id"]
    answers = [wx.post("cgi-bin/freepublish/get", {"publish_id": publish_id}) for _ in range(101)]
    assert [_errcode(a) for a in answers[:100]] == [0] * 100
    assert answers[100]["errcode"] == 45009
    wx.hook("today", {"date": (TODAY + timedelta(days=1)).isoformat()})
    assert wx.post("cgi-bin/freepublish/get", {"publish_id": publish_id})["publish_status"] == 0


# -- datacube -------------------------------------------------------------------------------------------------


def test_datacube_user_summary_is_deterministic_and_matches_cumulate(wx: Wx) -> None:
    begin = TODAY - timedelta(days=7)
    body = {"begin_date": begin.isoformat(), "end_date": (TODAY - timedelta(days=1)).isoformat()}
    summary = wx.post("datacube/getusersummary", body)["list"]
    days = [begin + timedelta(days=i) for i in range(7)]
    assert summary == [row for d in days for row in datacube_user_summary(d)]
    assert summary == Wx(create_emulator(APPID, SECRET)).post("datacube/getusersummary", body)["list"]
    cumulate = wx.post("datacube/getusercumulate", body)["list"]
    assert [c["ref_date"] for c in cumulate] == [d.isoformat() for d in days]
    for prev, cur in zip(cumulate, cumulate[1:], strict=False):
        net = sum(r["new_user"] - r["cancel_user"] for r in summary if r["ref_date"] == cur["ref_date"])
        assert cur["cumulate_user"] - prev["cumulate_user"] == net
    assert cumulate[-1]["cumulate_user"] == datacube_user_cumulate(days[-1])


@pytest.mark.parametrize(
    ("endpoint", "begin", "end", "errcode"),
    [
        ("getusersummary", "2026-03-06", "2026-03-13", 61501),  # 8 days, at most 7
        ("getusersummary", "2026-03-08", "2026-03-14", 0),
        ("getusersummary", "2026-03-14", "2026-03-15", 61501),  # today has no data yet: yesterday at most
        ("getusersummary", "2026-03-10", "2026-03-09", 61501),
        ("getusersummary", "2014-11-30", "2014-12-01", 61501),
        ("getusersummary", "2026/03/10", "2026-03-10", 61500),
        ("getusersummary", "2026-02-30", "2026-03-01", 61500),
        ("getarticlesummary", "2026-03-13", "2026-03-14", 61501),
        ("getuserread", "2026-03-12", "2026-03-14", 0),
        ("getuserread", "2026-03-11", "2026-03-14", 61501),
        ("getbizsummary", "2026-02-13", "2026-03-14", 0),  # 30 days
        ("getbizsummary", "2026-02-12", "2026-03-14", 61501),
        ("getarticleread", "2026-03-13", "2026-03-14", 61501),
    ],
)
def test_datacube_date_rules(wx: Wx, endpoint: str, begin: str, end: str, errcode: int) -> None:
    assert _errcode(wx.post(f"datacube/{endpoint}", {"begin_date": begin, "end_date": end})) == errcode


def test_datacube_article_endpoints(wx: Wx) -> None:
    yesterday = TODAY - timedelta(days=1)
    day = next(yesterday - timedelta(days=i) for i in range(8, 40) if datacube_articles(yesterday - timedelta(days=i)))
    body = {"begin_date": day.isoformat(), "end_date": day.isoformat()}
    total = wx.post("datacube/getarticletotaldetail", body)
    assert total["is_delay"] is False
    assert total["list"] == datacube_rows("getarticletotaldetail", day, yesterday=yesterday)
    assert [r["msgid"] for r in total["list"]] == [a["msgid"] for a in datacube_articles(day)]
    details = total["list"][0]["detail_list"]
    assert details[0]["stat_date"] == day.isoformat() and details[-1]["stat_date"] == yesterday.isoformat()
    assert [d["read_user"] for d in details] == sorted(d["read_user"] for d in details)  # cumulative
    everyone = next(s for s in details[0]["read_user_source"] if s["scene_desc"] == "全部")
    assert everyone["user_count"] == details[0]["read_user"]
    old = wx.post("datacube/getarticletotal", body)["list"][0]
    assert old["title"] == datacube_articles(day)[0]["title"] and len(old["details"]) == 7
    read = wx.post("datacube/getuserread", body)["list"]
    overall = next(r for r in read if r["user_source"] == 99999999)
    channels = [r["int_page_read_user"] for r in read if r["user_source"] != 99999999]
    assert sum(channels) == overall["int_page_read_user"] > 0
    hourly = wx.post("datacube/getuserreadhour", body)["list"]
    assert sum(r["int_page_read_user"] for r in hourly if r["user_source"] == 99999999) == overall["int_page_read_user"]
    old_day = {"begin_date": "2025-10-31", "end_date": "2025-10-31"}  # newer endpoints keep nothing before Nov 2025
    assert wx.post("datacube/getarticleread", old_day) == {"list": [], "is_delay": False}


# -- OAuth ----------------------------------------------------------------------------------------------------


def _authorize(wx: Wx, **overrides: str) -> Any:
    params = {
        "appid": APPID,
        "redirect_uri": "https://city.example/m/cb?x=1",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "s1",
    } | overrides
    return wx.http.get("/connect/oauth2/authorize", query_string=params)


def _exchange(wx: Wx, code: str, **overrides: str) -> dict[str, Any]:
    params = {"appid": APPID, "secret": SECRET, "code": code, "grant_type": "authorization_code"} | overrides
    return wx.http.get("/sns/oauth2/access_token", query_string=params).json


def test_oauth_code_is_single_use_and_short_lived(wx: Wx) -> None:
    res = _authorize(wx, auto_openid=ALICE)
    assert res.status_code == 302
    location = urlsplit(res.headers["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "city.example" and query["x"] == ["1"] and query["state"] == ["s1"]
    code = query["code"][0]
    assert _exchange(wx, code, secret="wrong")["errcode"] == 40125
    grant = _exchange(wx, code)
    assert grant["openid"] == ALICE and grant["scope"] == "snsapi_base" and "is_snapshotuser" not in grant
    assert _exchange(wx, code)["errcode"] == 40163  # WeChat: "code been used"
    assert _exchange(wx, "made-up")["errcode"] == 40029
    late = parse_qs(urlsplit(_authorize(wx, auto_openid=ALICE).headers["Location"]).query)["code"][0]
    wx.state.advance(301)
    assert _exchange(wx, late)["errcode"] == 40029


def test_oauth_page_snapshot_users_and_default_openid(wx: Wx) -> None:
    page = _authorize(wx, scope="snsapi_userinfo").get_data(as_text=True)
    assert "微信授权" in page and 'action="/connect/oauth2/authorize"' in page and ALICE in page
    # The simulator's sender is preselected: a newcomer who chats with `flask wechat send` then opens a page as them.
    wx.hook("users", {"users": [{"openid": SIMULATOR_OPENID, "subscribe": 1}]})
    page = _authorize(wx).get_data(as_text=True)
    assert f'<option value="{SIMULATOR_OPENID}" selected>' in page
    assert "appid 参数错误" in _authorize(wx, appid="wxother").get_data(as_text=True)
    assert "code" not in parse_qs(urlsplit(_authorize(wx, deny="1").headers["Location"]).query)
    wx.hook("users", {"users": [{"openid": BOB, "is_snapshotuser": 1}]})
    wx.hook("oauth", {"auto_openid": BOB})
    code = parse_qs(urlsplit(_authorize(wx).headers["Location"]).query)["code"][0]
    assert _exchange(wx, code)["is_snapshotuser"] == 1
    stranger = make_openid("new-visitor")
    code = parse_qs(urlsplit(_authorize(wx, auto_openid=stranger).headers["Location"]).query)["code"][0]
    assert _exchange(wx, code)["openid"] == stranger
    assert wx.get("cgi-bin/user/info", openid=stranger) == {"subscribe": 0, "openid": stranger, "tagid_list": []}


def test_oauth_userinfo_needs_the_userinfo_scope(wx: Wx) -> None:
    code = parse_qs(urlsplit(_authorize(wx, auto_openid=ALICE).headers["Location"]).query)["code"][0]
    grant = _exchange(wx, code)
    answer = wx.http.get("/sns/userinfo", query_string={"access_token": grant["access_token"], "openid": ALICE})
    assert answer.json["errcode"] == 48001
    code = parse_qs(urlsplit(_authorize(wx, auto_openid=ALICE, scope="snsapi_userinfo").headers["Location"]).query)[
        "code"
    ][0]
    grant = _exchange(wx, code)
    info = wx.http.get("/sns/userinfo", query_string={"access_token": grant["access_token"], "openid": ALICE}).json
    assert info["openid"] == ALICE and info["nickname"] == "微信用户"


# -- hooks, recording, strictness -----------------------------------------------------------------------------


def test_fail_hook_answers_the_next_calls_with_an_error(wx: Wx) -> None:
    wx.hook("fail", {"path": "cgi-bin/menu/get", "errcode": -1, "errmsg": "system error", "times": 2})
    assert wx.get("cgi-bin/menu/get") == {"errcode": -1, "errmsg": "system error"}
    assert wx.get("cgi-bin/menu/get")["errcode"] == -1
    assert wx.get("cgi-bin/menu/get")["errcode"] == 46003
    wx.hook("fail", {"path": "/cgi-bin/token", "errcode": 45009})
    assert wx.fetch_token()["errcode"] == 45009 and "access_token" in wx.fetch_token()


def test_garble_hook_loses_the_answer_after_the_work_or_answers_in_place_of_wechat(wx: Wx) -> None:
    menu = {"button": [{"type": "click", "name": "联系我们", "key": "CONTACT"}]}
    wx.hook("garble", {"path": "cgi-bin/menu/create"})  # done, but the answer is cut off on its way back
    res = wx.http.post("/cgi-bin/menu/create", query_string={"access_token": wx.token}, json=menu)
    assert res.status_code == 200 and res.data == b'{"errcode":0,"errmsg":"ok","'
    assert wx.get("cgi-bin/menu/get")["menu"]["button"][0]["key"] == "CONTACT"
    page = "<html>502 Bad Gateway</html>"
    gateway = {"status": 502, "body": page, "content_type": "text/html", "work": False, "times": 2}
    wx.hook("garble", {"path": "cgi-bin/menu/delete"} | gateway)
    assert wx.get("cgi-bin/menu/delete").status_code == 502
    assert wx.get("cgi-bin/menu/delete").status_code == 502
    assert "menu" in wx.get("cgi-bin/menu/get")  # never reached WeChat: the menu stands
    assert wx.get("cgi-bin/menu/delete") == {"errcode": 0, "errmsg": "ok"}
    calls = [c for c in wx.http.get("/_emulator/calls").json if c["path"] != "cgi-bin/token"]
    assert [c.get("garbled") for c in calls] == [200, None, 502, 502, None, None]


def test_every_call_is_recorded_without_its_token(wx: Wx) -> None:
    wx.get("cgi-bin/user/info", openid=ALICE)
    wx.post("cgi-bin/tags/create", {"tag": {"name": "网格员"}})
    calls = wx.http.get("/_emulator/calls").json
    assert [(c["method"], c["path"]) for c in calls] == [
        ("GET", "cgi-bin/token"),
        ("GET", "cgi-bin/user/info"),
        ("POST", "cgi-bin/tags/create"),
    ]
    assert calls[1]["query"] == {"openid": ALICE} and calls[1]["errcode"] == 0
    assert calls[2]["body"] == {"tag": {"name": "网格员"}}
    assert all("access_token" not in c["query"] for c in calls)
    assert wx.state.snapshot()["call_counts"]["cgi-bin/user/info"] == 1


def test_strictness_unknown_paths_bad_json_wrong_method(wx: Wx) -> None:
    res = wx.http.post("/cgi-bin/menu/creat", query_string={"access_token": wx.token}, json={})
    assert res.status_code == 404 and res.json == {
        "errcode": -1,
        "errmsg": "emulator: unknown endpoint cgi-bin/menu/creat",
    }
    assert wx.post("cgi-bin/menu/create", data="{'button': []}")["errcode"] == 47001
    assert wx.post("cgi-bin/menu/create", data="")["errcode"] == 44002
    assert wx.get("cgi-bin/menu/create")["errcode"] == 43002
    assert wx.post("cgi-bin/menu/get")["errcode"] == 43001


def test_state_dump_and_reset(wx: Wx) -> None:
    wx.post("cgi-bin/menu/create", MENU)
    state = wx.http.get("/_emulator/state").json
    assert {
        "menu",
        "conditional_menus",
        "users",
        "tags",
        "templates_sent",
        "custom_sent",
        "interactions",
        "media",
        "materials",
        "drafts",
        "publishes",
        "push_events",
        "token_fetches",
        "call_counts",
        "calls",
    } <= set(state)
    assert state["menu"]["button"][0]["key"] == "CONTACT" and len(state["users"]) == 2
    wx.hook("reset")
    state = wx.http.get("/_emulator/state").json
    assert state["menu"] is None and state["users"] == [] and state["calls"] == []
    assert state["today"] == date.today().isoformat() or state["today"] > TODAY.isoformat()
    assert wx.get("cgi-bin/menu/get")["errcode"] == 40001  # reset forgets the tokens too


def test_urls_carry_the_mount_prefix() -> None:
    emulator = create_emulator(APPID, SECRET)
    host = Flask("host")
    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {"/wechat-emulator": emulator})  # type: ignore[method-assign]
    http = host.test_client()
    token = http.get(
        "/wechat-emulator/cgi-bin/token",
        query_string={"grant_type": "client_credential", "appid": APPID, "secret": SECRET},
    ).json["access_token"]
    url = http.post(
        "/wechat-emulator/cgi-bin/media/uploadimg",
        query_string={"access_token": token},
        data={"media": (io.BytesIO(_image("PNG")), "a.png")},
    ).json["url"]
    assert urlsplit(url).path.startswith("/wechat-emulator/mmbiz_img/")
    assert http.get(urlsplit(url).path).data == _image("PNG")
    page = http.get(
        "/wechat-emulator/connect/oauth2/authorize",
        query_string={
            "appid": APPID,
            "redirect_uri": "http://localhost/cb",
            "response_type": "code",
            "scope": "snsapi_base",
        },
    )
    assert 'action="/wechat-emulator/connect/oauth2/authorize"' in page.get_data(as_text=True)


def test_event_xml() -> None:
    xml = event_xml({"Event": "PUBLISHJOBFINISH", "PublishEventInfo": {"publish_status": 0, "fail_idx": [1, 2]}})
    assert xml == (
        "<xml><Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo><publish_status>0"
        "</publish_status><fail_idx>1</fail_idx><fail_idx>2</fail_idx></PublishEventInfo></xml>"
    )


def test_wechatpy_over_real_http() -> None:
    """wechatpy itself, unmodified but for its base URLs, against the emulator on a real port."""
    from wechatpy import WeChatClient

    app = create_emulator(APPID, SECRET)
    app.extensions["wechat_emulator"].add_users([{"openid": ALICE}])
    with EmulatorServer(app) as server:
        client = WeChatClient(APPID, SECRET)
        client.API_BASE_URL = server.url + "cgi-bin/"
        client.datacube.API_BASE_URL = server.url + "datacube/"
        client.fetch_access_token = lambda: client._fetch_access_token(  # type: ignore[method-assign]
            server.url + "cgi-bin/token", {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        )
        client.menu.create(MENU)
        assert client.menu.get()["menu"]["button"][0]["key"] == "CONTACT"
        assert client.user.get(ALICE)["openid"] == ALICE
        media = client.media.upload("image", ("p.png", io.BytesIO(_image("PNG")), "image/png"))
        assert client.media.download(media["media_id"]).content == _image("PNG")
        yesterday = date.today() - timedelta(days=1)
        assert client.datacube.get_user_summary(yesterday - timedelta(days=2), yesterday) == [
            row for i in (2, 1, 0) for row in datacube_user_summary(yesterday - timedelta(days=i))
        ]
        app.extensions["wechat_emulator"].interact(ALICE)
        client.message.send_text(ALICE, "照片未能保存，请重新发送")
        assert (
            app.extensions["wechat_emulator"].snapshot()["custom_sent"][0]["text"]["content"]
            == "照片未能保存，请重新发送"
        )
        app.extensions["wechat_emulator"].expire_tokens()
        assert client.menu.get()["menu"]["menuid"] > 0  # wechatpy refetches on 40001 and retries
    assert app.extensions["wechat_emulator"].snapshot()["token_fetches"]["token"] == 2
    assert DATACUBE_EPOCH == date(2014, 12, 1)
