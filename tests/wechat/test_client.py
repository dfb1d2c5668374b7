"""The shared API client against the emulator over real HTTP: one token for all, retry once, no real hosts."""

from __future__ import annotations

import threading
import time
import traceback

import pytest
import requests
from wechatpy.exceptions import WeChatClientException

from server.wechat.client import (
    ForeignHostError,
    RedirectingSession,
    SharedTokenClient,
    UnreadableAnswer,
    describe,
    get_client,
    redact,
    send_template,
)
from tests.conftest import APPID, SECRET, foreign_lookups


def _client(emulator, redis_client) -> SharedTokenClient:
    return SharedTokenClient(APPID, SECRET, base=emulator.url, redis=redis_client)


def _fetches(emulator) -> int:
    return sum(emulator.state()["token_fetches"].values())


def test_concurrent_workers_fetch_the_token_once(emulator, redis_client):
    clients = [_client(emulator, redis_client) for _ in range(12)]  # one per "process": no shared memory
    barrier = threading.Barrier(len(clients))
    tokens, errors = [], []

    def work(c: SharedTokenClient) -> None:
        barrier.wait()
        try:
            c.menu.get()
        except WeChatClientException as exc:  # 46003: no menu yet; the call itself went through
            if exc.errcode != 46003:
                errors.append(exc)
        tokens.append(c.access_token)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(tokens)) == 1
    assert _fetches(emulator) == 1
    assert emulator.state()["token_fetches"].get("stable_token") == 1


def test_an_invalidated_token_is_refreshed_once_and_the_call_retried(emulator, redis_client):
    c = _client(emulator, redis_client)
    c.menu.create({"button": [{"type": "click", "name": "联系我们", "key": "CONTACT"}]})
    old = c.access_token
    emulator.hook("expire-tokens")
    assert c.menu.get()["menu"]["button"][0]["key"] == "CONTACT"
    assert c.access_token != old
    assert _fetches(emulator) == 2


def test_a_token_error_that_persists_is_raised_after_one_retry(emulator, redis_client):
    c = _client(emulator, redis_client)
    c.access_token  # noqa: B018  (fetch first)
    emulator.hook("fail", {"path": "cgi-bin/menu/get", "errcode": 40001, "errmsg": "invalid credential", "times": 5})
    with pytest.raises(WeChatClientException) as info:
        c.menu.get()
    assert info.value.errcode == 40001
    menu_calls = [call for call in emulator.state()["calls"] if call["path"].endswith("menu/get")]
    assert len(menu_calls) == 2


def test_concurrent_workers_fetch_the_jsapi_ticket_once_and_reuse_it(emulator, redis_client):
    clients = [_client(emulator, redis_client) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    tickets, errors = [], []

    def work(c: SharedTokenClient) -> None:
        barrier.wait()
        try:
            tickets.append(c.jsapi_ticket())
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(tickets) == 8 and len(set(tickets)) == 1
    assert _client(emulator, redis_client).jsapi_ticket() == tickets[0]  # a later process reads it from Redis
    state = emulator.state()
    assert state["ticket_fetches"] == 1 and state["jsapi_tickets"] == tickets[:1]
    assert _fetches(emulator) == 1


def test_getticket_with_an_invalidated_token_refreshes_it_and_retries(emulator, redis_client):
    c = _client(emulator, redis_client)
    old = c.access_token
    emulator.hook("expire-tokens")
    ticket = c.jsapi_ticket()
    assert c.access_token != old and _fetches(emulator) == 2
    calls = [call["errcode"] for call in emulator.state()["calls"] if call["path"] == "cgi-bin/ticket/getticket"]
    assert calls == [40001, 0]
    assert emulator.state()["jsapi_tickets"] == [ticket]


def test_every_hard_coded_host_goes_to_the_configured_base(emulator, redis_client):
    c = _client(emulator, redis_client)
    emulator.hook("users", {"users": [{"openid": "o-1"}]})
    c.message.send_template("o-1", "TPL", {"first": {"value": "hi"}})
    c.datacube.get_user_summary("2025-01-01", "2025-01-03")  # https://api.weixin.qq.com/datacube/
    ticket = c.qrcode.create(
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "open_day"}}}
    )["ticket"]
    png = c.show_qrcode(ticket)  # https://mp.weixin.qq.com/cgi-bin/showqrcode
    assert png.content.startswith(b"\x89PNG")
    paths = {call["path"] for call in emulator.state()["calls"]}
    assert {
        "cgi-bin/message/template/send",
        "datacube/getusersummary",
        "cgi-bin/qrcode/create",
        "cgi-bin/showqrcode",
    } <= {p.lstrip("/") for p in paths}
    assert foreign_lookups == []


def test_the_session_refuses_hosts_that_are_not_wechat():
    session = RedirectingSession("http://127.0.0.1:9/")
    assert session.route("https://api.weixin.qq.com/cgi-bin/token?x=1") == "http://127.0.0.1:9/cgi-bin/token?x=1"
    assert (
        session.route("https://open.weixin.qq.com/connect/oauth2/authorize")
        == "http://127.0.0.1:9/connect/oauth2/authorize"
    )
    with pytest.raises(ForeignHostError):
        session.route("https://evil.example.com/cgi-bin/token")


def test_production_base_leaves_urls_alone():
    session = RedirectingSession("https://api.weixin.qq.com/")
    assert (
        session.route("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=t")
        == "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=t"
    )


def test_oauth_code_exchange(emulator, app, redis_client):
    with app.app_context():
        c = get_client()
        url = c.oauth_authorize_url("http://127.0.0.1/m/cb", "st")
        assert url.startswith(emulator.url + "connect/oauth2/authorize?")
        code = emulator.app.test_client().get(
            "/connect/oauth2/authorize",
            query_string={
                "appid": APPID,
                "redirect_uri": "http://127.0.0.1/m/cb",
                "response_type": "code",
                "scope": "snsapi_base",
                "state": "st",
                "auto_openid": "o-citizen",
            },
        )
        location = code.headers["Location"]
        the_code = location.split("code=")[1].split("&")[0]
        assert c.oauth_exchange(the_code)["openid"] == "o-citizen"
        with pytest.raises(WeChatClientException) as info:
            c.oauth_exchange(the_code)  # single use
        assert info.value.errcode == 40163  # WeChat: "code been used"


def test_a_failed_call_names_no_credentials_in_its_error_or_the_logs(redis_client, caplog):
    client = SharedTokenClient(APPID, SECRET, base="http://127.0.0.1:9/", redis=redis_client)  # nothing listens
    client.session.set(client.access_token_key, "TOKEN-SECRET-123")
    client.session.set(f"{client.access_token_key}_expires_at", int(time.time()) + 3600)
    with pytest.raises(requests.ConnectionError) as raised:
        client.user.get("oCitizen")
    assert "127.0.0.1" in str(raised.value)  # still says where it failed
    assert "TOKEN-SECRET-123" not in str(raised.value) and "access_token=***" in str(raised.value)
    assert "TOKEN-SECRET-123" not in caplog.text
    assert redact("/sns/oauth2/access_token?appid=wx1&secret=S&code=C&grant_type=x") == (
        "/sns/oauth2/access_token?appid=wx1&secret=***&code=***&grant_type=x"
    )


def test_an_oauth_error_page_names_neither_secret_nor_code(redis_client, caplog):
    from tests.conftest import serve_in_thread

    def bad_gateway(environ, start_response):
        start_response("502 Bad Gateway", [("Content-Type", "text/html")])
        return [b"<html>502 Bad Gateway</html>"]

    url, server = serve_in_thread(bad_gateway)
    try:
        client = SharedTokenClient(APPID, "APPSECRET-123", base=url, redis=redis_client)
        with pytest.raises(WeChatClientException) as raised:
            client.oauth_exchange("CODE-XYZ")
    finally:
        server.shutdown()
    assert raised.value.errcode == -1 and "502" in str(raised.value)
    ours = str(raised.value) + "".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")  # not the stub's
    assert "APPSECRET-123" not in ours and "CODE-XYZ" not in ours


def test_a_template_refusal_reads_in_chinese_with_its_code_and_no_request_id(app, emulator, redis_client):
    body = {"touser": "o-stranger", "template_id": "TPL", "data": {"thing1": {"value": "x"}}}
    with app.app_context():
        error, permanent = send_template(body)  # the emulator knows no such follower, as WeChat would not
    assert (error, permanent) == ("40003 openid 无效：不是本公众号的粉丝", True)
    assert "rid" not in error


@pytest.mark.parametrize(
    ("errcode", "errmsg", "text"),
    [
        (43004, "require subscribe rid: 6752e0b1-1a2b3c4d-5e6f7a8b", "43004 用户未关注公众号"),
        (43101, "user refuse to accept the msg rid: 1-2-3", "43101 用户拒收：未订阅此类消息"),
        (40037, "invalid template_id", "40037 模板 ID 无效：请核对公众平台里的模板"),
        (47003, "argument invalid! data.thing1.value invalid", "47003 模板参数不正确"),
        (45009, "reach max api daily quota limit", "45009 今天调用微信接口的次数已用完，请明天再试"),
        (42001, "access_token expired", "42001 access_token 无效或已过期"),
        (-1, "system error rid: 1-2-3", "-1 微信系统繁忙"),
        (40018, "invalid button name size rid: 1-2-3", "40018 一级菜单名称长度不合法（不超过 16 字节）"),  # a menu's
        (45029, "qrcode count out of limit", "45029 永久二维码数量已达微信上限（10 万个），无法再生成"),  # a QR's
        (40033, "invalid charset hint: [abc] rid: 1-2-3", "40033 invalid charset"),  # not ours to explain: as sent
        (40033, "rid: 1-2-3", "40033 未知错误"),  # nothing but noise
        (None, "HTTP 502", "微信服务器暂时出错（HTTP 502），请稍后再试"),  # a status code, not one of WeChat's
    ],
)
def test_a_wechat_error_reads_in_chinese_with_its_code_and_no_request_id(errcode, errmsg, text):
    assert describe(WeChatClientException(errcode, errmsg)) == text


def test_an_answer_we_could_not_read_says_so_after_the_busy_text():
    assert describe(UnreadableAnswer(-1, "微信返回了无法解析的应答")) == "-1 微信系统繁忙（微信返回了无法解析的应答）"


def test_a_caller_puts_its_context_first():
    assert describe(WeChatClientException(40018, "x"), "菜单发布失败：") == (
        "菜单发布失败：40018 一级菜单名称长度不合法（不超过 16 字节）"
    )
    assert (
        describe(requests.ConnectionError("refused"), "菜单发布失败：")
        == "菜单发布失败：无法连接微信服务器，请稍后再试"
    )


def test_no_connection_and_a_bug_read_apart(redis_client):
    dead = SharedTokenClient(APPID, SECRET, base="http://127.0.0.1:9/", redis=redis_client, timeout=1)
    with pytest.raises(requests.RequestException) as raised:  # a real refused connection, through our session
        dead.refresh_token()
    assert describe(raised.value) == "无法连接微信服务器，请稍后再试"
    assert describe(KeyError("media_id")) == "意外错误：KeyError"  # not blamed on the network


GATEWAY = {"status": 502, "body": "<html>502 Bad Gateway</html>", "content_type": "text/html", "work": False}


def test_an_http_error_status_names_no_token_in_its_traceback_and_reads_in_chinese(app, emulator, redis_client):
    emulator.hook("users", {"users": [{"openid": "o-citizen", "subscribe": 1}]})
    body = {"touser": "o-citizen", "template_id": "TPL", "data": {"thing1": {"value": "x"}}}
    with app.app_context():
        client = get_client()
        emulator.hook("garble", {"path": "cgi-bin/user/get"} | GATEWAY)
        with pytest.raises(WeChatClientException) as raised:
            client.user.get_followers()
        # What a log line or Celery prints of a failed task: the exception with everything chained to it.
        printed = "".join(traceback.format_exception(raised.value))
        assert client.access_token not in printed
        assert raised.value.errcode is None and raised.value.errmsg == "HTTP 502"  # still told from WeChat's codes
        emulator.hook("garble", {"path": "cgi-bin/message/template/send"} | GATEWAY)
        assert send_template(body) == ("微信服务器暂时出错（HTTP 502），请稍后再试", False)  # retried, says why
