"""POST/GET /wechat: signatures, modes, hostile input, retries, unknown types, failing handlers."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from wechatpy.messages import TextMessage
from wechatpy.replies import TextReply

from handlers import router
from models import Follower, InboundMessage, MessageStatus
from server.extensions import db
from server.services import inbound, replies
from server.wechat import gateway, simulator
from server.wechat.protocol import dedupe_key, parse_xml, render_reply, signature
from tests.conftest import SQLITE
from tests.factories import rule


def _count(db_session) -> int:
    return db_session.scalar(sa.select(sa.func.count()).select_from(InboundMessage))


def _verify_args(account, **overrides):
    ts, nonce = str(int(time.time())), "n0nce"
    args = {"signature": signature(account.token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "e4ho-123"}
    args.update(overrides)
    return args


def _subscribe(openid: str, key: str) -> str:
    """A scan-to-subscribe event sent now (events have no MsgId: sender, time, event and key identify them)."""
    return simulator.message_xml(
        openid, "event", {"Event": "subscribe", "EventKey": key}, to="gh_x", create_time=int(time.time())
    )


class TestUrlVerification:
    def test_echoes_echostr_in_plain_text_when_signed(self, client, account):
        res = client.get("/wechat", query_string=_verify_args(account))
        assert res.status_code == 200
        assert res.get_data(as_text=True) == "e4ho-123"

    @pytest.mark.parametrize("override", [{"signature": "0" * 40}, {"nonce": "other"}, {"signature": ""}])
    def test_bad_signature_is_403(self, client, account, override):
        assert client.get("/wechat", query_string=_verify_args(account, **override)).status_code == 403

    def test_stale_timestamp_is_403_even_if_signed(self, client, account):
        old = str(int(time.time()) - 3600)
        args = _verify_args(account, timestamp=old, signature=signature(account.token, old, "n0nce"))
        assert client.get("/wechat", query_string=args).status_code == 403

    @pytest.mark.parametrize("override", [{"timestamp": "²"}, {"signature": "é" * 40}, {"signature": "ｆ" * 40}])
    def test_non_ascii_timestamp_or_signature_is_403(self, client, account, override):
        assert client.get("/wechat", query_string=_verify_args(account, **override)).status_code == 403

    def test_missing_echostr_is_400(self, client, account):
        args = _verify_args(account)
        del args["echostr"]
        assert client.get("/wechat", query_string=args).status_code == 400


@pytest.mark.smoke
class TestReplies:
    @pytest.mark.parametrize("aes", [False, True])
    def test_keyword_reply_is_addressed_back_to_the_sender(self, wechat, account, db_session, aes):
        rule("开放日", "7·15 开放日报名即将开始")
        reply = wechat.text("o-user-1", "请问开放日怎么报名", aes=aes)
        assert reply["MsgType"] == "text"
        assert reply["Content"] == "7·15 开放日报名即将开始"
        assert reply["ToUserName"] == "o-user-1"
        assert reply["FromUserName"] == account.original_id

    def test_encrypted_reply_is_really_encrypted(self, wechat, db_session):
        rule("你好", "您好")
        xml = simulator.message_xml("o-user-1", "text", {"Content": "你好"}, to="gh_x")
        res = wechat.post(xml, aes=True)
        body = res.get_data(as_text=True)
        assert "<Encrypt>" in body and "您好" not in body

    def test_no_match_and_no_default_is_success(self, wechat, db_session):
        res = wechat.post(simulator.message_xml("o-user-1", "text", {"Content": "zzz"}, to="gh_x"))
        assert res.get_data(as_text=True) == "success"

    def test_default_reply_when_nothing_matches(self, wechat, db_session):
        replies.set_text_setting(replies.DEFAULT_KEY, "已收到")
        assert wechat.text("o-user-1", "随便说点")["Content"] == "已收到"

    def test_menu_click_gets_the_configured_reply(self, wechat, db_session):
        rule("CONTACT", "热线 12345", match_type="click")
        assert wechat.event("o-user-1", "CLICK", "CONTACT")["Content"] == "热线 12345"


class TestSignatures:
    def test_forged_signature_is_403_and_records_nothing(self, wechat, account, db_session):
        xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x")
        params, body = simulator.signed_request(account, xml)
        params["signature"] = signature("wrongtoken", params["timestamp"], params["nonce"])
        assert wechat.client.post("/wechat", query_string=params, data=body).status_code == 403
        assert _count(db_session) == 0

    def test_replayed_old_request_is_403(self, wechat, db_session):
        xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x")
        res = wechat.post(xml, timestamp=int(time.time()) - 301)
        assert res.status_code == 403
        assert _count(db_session) == 0

    def test_safe_mode_checks_msg_signature_over_the_encrypted_body(self, wechat, account, db_session):
        xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x")
        params, body = simulator.signed_request(account, xml, aes=True)
        params["msg_signature"] = "f" * 40
        assert wechat.client.post("/wechat", query_string=params, data=body).status_code == 403
        tampered = body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA")
        params, _ = simulator.signed_request(account, xml, aes=True)
        assert wechat.client.post("/wechat", query_string=params, data=tampered).status_code == 403
        assert _count(db_session) == 0

    def test_safe_mode_refuses_a_message_encrypted_for_another_account(self, wechat, account, db_session):
        other = simulator.Account(account.token, "wxsomeoneelse00000", account.aes_key)
        xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x")
        params, body = simulator.signed_request(other, xml, aes=True)
        assert wechat.client.post("/wechat", query_string=params, data=body).status_code == 403
        assert _count(db_session) == 0


_ENVELOPE = (
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>{t}</MsgType>"
)
HOSTILE = {
    "billion laughs": '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&lol2;</Content><MsgId>1</MsgId></xml>",
    "xxe": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>",
    "lowercase doctype": "<!doctype xml><xml><MsgType>text</MsgType></xml>",
    "malformed": "<xml><ToUserName>a</ToUserName><FromUser",
    "not xml root": "<root><ToUserName>a</ToUserName></root>",
    "empty": "",
    "missing MsgType": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime></xml>",
    "non-numeric CreateTime": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>",
    "nested MsgType": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType><x>text</x></MsgType></xml>",
    # Signed (the plaintext signature does not cover the body), but never what WeChat sends:
    "repeated EventKey": _ENVELOPE.format(t="event") + "<Event>SCAN</Event><EventKey><a>1</a><a>2</a></EventKey></xml>",
    "repeated Content": _ENVELOPE.format(t="text") + "<Content>a</Content><Content>b</Content><MsgId>7</MsgId></xml>",
    "superscript CreateTime": _ENVELOPE.format(t="text").replace("<CreateTime>1<", "<CreateTime>²<")
    + "<Content>a</Content></xml>",
    "CreateTime after 2286": _ENVELOPE.format(t="text").replace("<CreateTime>1<", "<CreateTime>999999999999<")
    + "<Content>a</Content></xml>",
    "superscript MsgId": _ENVELOPE.format(t="text") + "<Content>a</Content><MsgId>²</MsgId></xml>",
    "image without MediaId or PicUrl": _ENVELOPE.format(t="image") + "<Format>jpg</Format><MsgId>8</MsgId></xml>",
    "image with a blank MediaId": _ENVELOPE.format(t="image") + "<MediaId> </MediaId><MsgId>9</MsgId></xml>",
    "5,000 nested elements": _ENVELOPE.format(t="text") + "<a>" * 5000 + "</a>" * 5000 + "</xml>",
}


class TestHostileInput:
    @pytest.mark.parametrize("name", sorted(HOSTILE))
    def test_refused_with_400_and_nothing_recorded(self, wechat, db_session, name):
        assert wechat.post(HOSTILE[name]).status_code == 400
        assert _count(db_session) == 0

    @pytest.mark.parametrize("name", ["billion laughs", "xxe", "malformed"])
    def test_refused_inside_safe_mode_too(self, wechat, db_session, name):
        assert wechat.post(HOSTILE[name], aes=True).status_code == 400
        assert _count(db_session) == 0

    def test_utf16_cannot_smuggle_a_doctype(self, wechat, db_session):
        assert (
            wechat.post(
                HOSTILE["xxe"].replace('"1.0"?', '"1.0" encoding="UTF-16"?').encode("utf-16").decode("latin-1")
            ).status_code
            == 400
        )

    def test_body_over_64_kb_is_413(self, wechat, db_session):
        big = simulator.message_xml("o-user-1", "text", {"Content": "长" * 30_000}, to="gh_x")
        assert len(big.encode()) > 64 * 1024
        assert wechat.post(big).status_code == 413
        assert _count(db_session) == 0


@pytest.mark.smoke
class TestRetries:
    def test_a_retried_message_is_processed_once_and_answered_the_same(self, wechat, account, db_session):
        rule("你好", "您好")
        xml = simulator.message_xml("o-user-1", "text", {"Content": "你好"}, to="gh_x", msg_id=424242)
        first = wechat.post(xml).get_data(as_text=True)
        second = wechat.post(xml).get_data(as_text=True)  # WeChat's retry: same body, new nonce and timestamp
        third = wechat.post(xml, aes=True)
        assert first == second
        assert simulator.decode_reply(account, third.get_data(as_text=True), aes=True)["Content"] == "您好"
        assert _count(db_session) == 1

    def test_a_retried_event_is_processed_once(self, wechat, db_session):
        xml = _subscribe("o-user-2", "qrscene_poster")
        for _ in range(3):
            assert wechat.post(xml).status_code == 200
        assert _count(db_session) == 1

    def test_distinct_events_of_one_user_are_both_kept(self, wechat, db_session):
        now = int(time.time())
        wechat.event("o-user-3", "CLICK", "A", create_time=now)
        wechat.event("o-user-3", "CLICK", "B", create_time=now)
        assert _count(db_session) == 2

    def test_when_redis_lost_the_claim_the_database_still_dedupes(self, wechat, redis_client, db_session):
        rule("你好", "您好")
        xml = simulator.message_xml("o-user-1", "text", {"Content": "你好"}, to="gh_x", msg_id=777)
        first = wechat.post(xml).get_data(as_text=True)
        redis_client.flushdb()  # a Redis restart between WeChat's tries
        assert wechat.post(xml).get_data(as_text=True) == first
        assert _count(db_session) == 1

    def _abandoned(self, redis_client, xml: str, seconds_ago: float) -> str:
        """The first copy's claim, made `seconds_ago`, by a process that then died (its TTL tells its age)."""
        key = dedupe_key(parse_xml(xml))
        redis_client.set(f"wx:reply:{key}", b"", px=int((gateway.REPLY_TTL - seconds_ago) * 1000))
        return key

    def test_a_claim_left_by_a_process_that_died_is_taken_over_by_a_retry(self, wechat, redis_client, db_session):
        rule("你好", "您好")
        xml = simulator.message_xml("o-user-1", "text", {"Content": "你好"}, to="gh_x", msg_id=8801)
        self._abandoned(redis_client, xml, seconds_ago=10)
        first = wechat.post(xml).get_data(as_text=True)
        assert parse_xml(first)["Content"] == "您好" and _count(db_session) == 1
        assert wechat.post(xml).get_data(as_text=True) == first  # and the retries after it get its reply

    def test_a_dead_copys_logged_event_is_handled_by_the_retry_that_takes_over(self, wechat, redis_client, db_session):
        xml = _subscribe("o-user-9", "qrscene_x")
        key = self._abandoned(redis_client, xml, seconds_ago=12)
        db_session.add(InboundMessage(**inbound.row_for(parse_xml(xml), key)))  # logged, then the process died
        db_session.commit()
        assert wechat.post(xml).status_code == 200
        db_session.expire_all()
        assert db_session.scalars(sa.select(Follower.source_scene).filter_by(openid="o-user-9")).one() == "x"
        assert db_session.scalars(sa.select(InboundMessage.reply)).one() is not None
        assert _count(db_session) == 1

    def test_a_claim_still_young_is_waited_on_not_taken(self, app, wechat, redis_client, db_session, monkeypatch):
        monkeypatch.setattr(app.extensions["wechat_gateway"], "timeout", 0.3)  # the retry waits 1.3 s for it
        rule("你好", "您好")
        xml = simulator.message_xml("o-user-1", "text", {"Content": "你好"}, to="gh_x", msg_id=8802)
        self._abandoned(redis_client, xml, seconds_ago=1)  # the first copy may still be at work
        assert wechat.post(xml).get_data(as_text=True) == "success"
        assert _count(db_session) == 0


@pytest.mark.smoke
class TestUnknownTypes:
    @pytest.mark.parametrize(
        "msg_type,fields",
        [
            ("event", {"Event": "PUBLISHJOBFINISH", "PublishEventInfo": "x"}),
            ("event", {"Event": "subscribe_msg_popup_event"}),
            ("event", {"Event": "some_future_event", "EventKey": "k"}),
            ("hologram", {"Depth": "3"}),
            ("file", {"Title": "a.pdf", "FileKey": "k"}),
        ],
    )
    def test_recorded_and_answered(self, wechat, db_session, msg_type, fields):
        # "success" even with a default reply set: a type we cannot read may not be a citizen's message at all.
        replies.set_text_setting(replies.DEFAULT_KEY, "已收到")
        res = wechat.post(simulator.message_xml("o-user-1", msg_type, fields, to="gh_x"))
        assert res.status_code == 200 and res.get_data(as_text=True) == "success"
        row = db_session.scalars(sa.select(InboundMessage)).one()
        assert row.msg_type == msg_type
        assert row.status is MessageStatus.OK

    def test_a_known_type_with_no_handler_of_its_own_gets_the_default_reply(self, wechat, db_session):
        replies.set_text_setting(replies.DEFAULT_KEY, "已收到")
        res = wechat.post(simulator.message_xml("o-user-1", "link", {"Title": "t", "Url": "https://a.cn"}, to="gh_x"))
        assert parse_xml(res.get_data())["Content"] == "已收到"

    def test_publish_job_finish_is_parsed_with_its_nested_fields(self, wechat, db_session, monkeypatch):
        seen = []
        monkeypatch.setitem(router._routes, ("event", "publishjobfinish", None), lambda m: seen.append(m))
        xml = (
            "<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oSystem]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[PUBLISHJOBFINISH]]></Event>"
            "<PublishEventInfo><publish_id>2247503051</publish_id><publish_status>0</publish_status>"
            "<article_id><![CDATA[b5O2OUs25HBxRceL7hfReg]]></article_id><article_detail><count>2</count>"
            "<item><idx>1</idx><article_url><![CDATA[https://mp.weixin.qq.com/s/a]]></article_url></item>"
            "<item><idx>2</idx><article_url><![CDATA[https://mp.weixin.qq.com/s/b]]></article_url></item>"
            "</article_detail></PublishEventInfo></xml>"
        )
        assert wechat.post(xml).get_data(as_text=True) == "success"
        (event,) = seen
        assert (event.publish_id, event.publish_status, event.article_id) == ("2247503051", 0, "b5O2OUs25HBxRceL7hfReg")
        assert event.article_urls == ["https://mp.weixin.qq.com/s/a", "https://mp.weixin.qq.com/s/b"]


class TestFailingHandlers:
    def test_a_raising_handler_gets_the_default_reply_and_the_message_is_kept(self, wechat, db_session, monkeypatch):
        replies.set_text_setting(replies.DEFAULT_KEY, "稍后回复您")

        def broken(message):
            raise RuntimeError("boom")

        monkeypatch.setitem(router._routes, ("text", None, None), broken)
        assert wechat.text("o-user-1", "hi")["Content"] == "稍后回复您"
        row = db_session.scalars(sa.select(InboundMessage)).one()
        assert row.status is MessageStatus.ERROR

    def test_a_slow_handler_does_not_hold_the_reply(self, wechat, app, db_session, monkeypatch):
        replies.set_text_setting(replies.DEFAULT_KEY, "稍后回复您")
        release = threading.Event()

        def slow(message):
            release.wait(5)
            return "too late"

        monkeypatch.setitem(router._routes, ("text", None, None), slow)
        started = time.monotonic()
        reply = wechat.text("o-user-1", "hi")
        elapsed = time.monotonic() - started
        release.set()
        assert reply["Content"] == "稍后回复您"
        assert app.config["WECHAT_HANDLER_TIMEOUT"] <= elapsed < app.config["WECHAT_HANDLER_TIMEOUT"] + 1

    @pytest.mark.skipif(SQLITE, reason="a statement that waits is PostgreSQL's")
    def test_an_inline_handler_stuck_in_the_database_does_not_hold_the_reply(
        self, wechat, app, db_session, monkeypatch
    ):
        # Inline handlers run in the request thread: the text handler writes to an open tip draft there, and a row
        # lock held elsewhere (a migration, a long transaction) would hold the reply past WeChat's 5 s.
        replies.set_text_setting(replies.DEFAULT_KEY, "稍后回复您")

        def stuck(message):
            db.session.execute(sa.text("SELECT pg_sleep(10)"))  # as a statement waiting on a lock would
            return "too late"

        stuck.inline, stuck.peek = True, None
        monkeypatch.setitem(router._routes, ("text", None, None), stuck)
        started = time.monotonic()
        reply = wechat.text("o-user-1", "hi")
        assert time.monotonic() - started < app.config["WECHAT_HANDLER_TIMEOUT"] + 1
        assert reply["Content"] == "稍后回复您"
        assert db_session.scalars(sa.select(InboundMessage)).one().status is MessageStatus.ERROR

    @pytest.mark.skipif(SQLITE, reason="a statement that waits is PostgreSQL's")
    def test_a_pooled_handler_stuck_in_the_database_gives_its_thread_back(self, wechat, app, db_session, monkeypatch):
        # Past its budget a pooled handler's answer is not used, but it runs on: stuck on a lock, it held a pool
        # thread, and eight of them every slow handler's message.
        monkeypatch.setattr(app.extensions["wechat_gateway"], "timeout", 0.3)
        monkeypatch.setattr(gateway, "POOLED_STATEMENTS", 1.0)
        outcome = []

        def stuck(message):
            try:
                db.session.execute(sa.text("SELECT pg_sleep(10)"))  # as a statement waiting on a lock would
            except Exception as exc:
                outcome.append(type(exc).__name__)
                raise
            outcome.append("slept")

        stuck.inline, stuck.peek = False, None
        monkeypatch.setitem(router._routes, ("event", "subscribe", None), stuck)
        assert (
            wechat.post(simulator.message_xml("o-user-1", "event", {"Event": "subscribe"}, to="gh_x")).status_code
            == 200
        )
        deadline = time.monotonic() + 5
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcome == ["OperationalError"]  # cancelled by PostgreSQL at 1 s, not after 10


@pytest.mark.smoke
class TestFollowers:
    def test_subscribe_from_a_scene_then_resubscribe_keeps_the_source(self, wechat, db_session):
        now = int(time.time())
        welcome = wechat.event("o-fan", "subscribe", "qrscene_open_day", create_time=now - 100)
        assert welcome["Content"] == replies.DEFAULT_WELCOME
        wechat.event("o-fan", "unsubscribe", create_time=now - 50)
        follower = db_session.scalars(sa.select(Follower)).one()
        assert follower.subscribed is False and follower.unsubscribed_at is not None
        wechat.event("o-fan", "subscribe", create_time=now)
        db_session.expire_all()
        follower = db_session.scalars(sa.select(Follower)).one()
        assert follower.subscribed is True
        assert follower.source_scene == "open_day"
        assert int(follower.first_subscribed_at.timestamp()) == now - 100
        assert int(follower.subscribed_at.timestamp()) == now

    @pytest.mark.parametrize("content", ["<Content/>", "<Content> </Content>"])
    def test_an_empty_text_is_answered_without_a_handler_error(self, wechat, db_session, content):
        res = wechat.post(_ENVELOPE.format(t="text") + content + "<MsgId>11</MsgId></xml>")
        assert res.status_code == 200
        assert db_session.scalars(sa.select(InboundMessage)).one().status is MessageStatus.OK

    def test_a_scan_without_a_scene_is_still_recorded(self, wechat, db_session):
        assert wechat.event("o-scan-bare", "SCAN") is None
        db_session.expire_all()
        assert db_session.scalars(sa.select(Follower)).one().last_scene == ""
        assert db_session.scalars(sa.select(InboundMessage)).one().status is MessageStatus.OK  # no handler error

    def test_scan_and_location_are_recorded(self, wechat, db_session):
        wechat.event("o-fan", "subscribe")
        wechat.event("o-fan", "SCAN", "poster_7")
        wechat.send(
            "o-fan", "event", {"Event": "LOCATION", "Latitude": 31.2304, "Longitude": 121.4737, "Precision": 30.0}
        )
        db_session.expire_all()
        follower = db_session.scalars(sa.select(Follower)).one()
        assert follower.last_scene == "poster_7"
        assert (follower.latitude, follower.longitude) == (31.2304, 121.4737)

    def test_every_message_is_logged_with_its_fields(self, wechat, db_session):
        wechat.send("o-fan", "location", {"Location_X": 31.2, "Location_Y": 121.4, "Scale": 15, "Label": "人民广场"})
        wechat.event("o-fan", "VIEW", "https://example.org/m/tips/new")
        rows = db_session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)).all()
        assert [(r.msg_type, r.event) for r in rows] == [("location", None), ("event", "view")]
        assert rows[0].payload["Label"] == "人民广场"
        assert rows[1].event_key == "https://example.org/m/tips/new" and "EventKey" not in rows[1].payload
        long_url = "https://example.org/m/tips/new?" + "x=1&" * 100
        wechat.event("o-fan", "VIEW", long_url)
        row = db_session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert row.event_key == long_url[:256] and row.payload["EventKey"] == long_url  # kept whole
        assert all(r.openid == "o-fan" for r in rows)


def test_a_retry_has_the_key_of_its_first_copy_and_any_other_delivery_its_own():
    sent = {"ToUserName": "gh_test", "FromUserName": "o-sender", "CreateTime": "1767225600", "MsgType": "event"}
    template = sent | {"Event": "TEMPLATESENDJOBFINISH", "Status": "success"}
    assert dedupe_key(template | {"MsgID": "1"}) != dedupe_key(template | {"MsgID": "2"})
    assert dedupe_key(template | {"MsgID": "1"}) == dedupe_key(dict(reversed((template | {"MsgID": "1"}).items())))
    publish = sent | {"Event": "PUBLISHJOBFINISH"}
    first, second = (
        {"PublishEventInfo": {"publish_id": i, "publish_status": "0"}} for i in ("2247483700", "2247483701")
    )
    assert dedupe_key(publish | first) != dedupe_key(publish | second)
    # Two cards received in the same second: one kind of event, no EventKey, two deliveries.
    card = sent | {"Event": "user_get_card", "IsGiveByFriend": "0"}
    assert dedupe_key(card | {"CardId": "pZI8a"}) != dedupe_key(card | {"CardId": "pZI8b"})
    # Messages: the MsgId leads the key; another message reusing it (as WeChat's sample XML does) is not a retry.
    text = sent | {"MsgType": "text", "Content": "你好", "MsgId": "1234567890123456"}
    image = sent | {"MsgType": "image", "PicUrl": "http://x/p", "MediaId": "m1", "MsgId": "1234567890123456"}
    assert dedupe_key(text).startswith("m:1234567890123456:") and dedupe_key(text) != dedupe_key(image)
    assert dedupe_key(text) != dedupe_key(text | {"FromUserName": "o-other"})
    assert len(dedupe_key(text | {"MsgId": "9" * 24})) <= 64  # the column's width


def test_messages_reusing_a_msgid_are_each_answered_to_their_sender_and_logged(wechat, db_session):
    # Its own rule and default reply: another test's, still in the reply cache for a second, had answered it.
    rule("你好", "您好")
    replies.set_text_setting(replies.DEFAULT_KEY, "已收到")
    first = wechat.send("o-first", "text", {"Content": "你好"}, msg_id=1234567890123456)
    place = {"Location_X": 31.2, "Location_Y": 121.4, "Label": "某处"}
    second = wechat.send("o-second", "location", place, msg_id=1234567890123456)
    assert first["ToUserName"] == "o-first" and second["ToUserName"] == "o-second"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 2


def test_a_value_holding_a_cdata_terminator_is_echoed_in_well_formed_xml():
    message = TextMessage({"ToUserName": "gh", "FromUserName": "o1", "CreateTime": "1", "MsgType": "text"})
    for reply, text in (
        ("已收到位置：SOHO ]]> 3号楼", "已收到位置：SOHO ]]> 3号楼"),
        (TextReply(content="a]]>b<&"), "a]]>b<&"),
        ("<![CDATA[x]]>", "<![CDATA[x]]>"),  # as many openings as ends: no count can tell it is safe
    ):
        assert parse_xml(render_reply(reply, message))["Content"] == text
    news = [{"title": "t]]>x", "description": "d", "url": "https://example.org/a", "image": "https://example.org/i"}]
    assert parse_xml(render_reply(news, message))["Articles"]["item"]["Title"] == "t]]>x"


def test_an_image_without_media_id_from_an_old_client_is_logged_and_asked_again(wechat, db_session):
    reply = wechat.send("o-old", "image", {"PicUrl": "http://mmsns.qpic.cn/mmsns/x/0"})
    assert "重新发送" in reply["Content"]
    assert db_session.scalar(sa.select(InboundMessage.msg_type).filter_by(openid="o-old")) == "image"


@pytest.mark.parametrize("encoding", ["GBK", "ISO-8859-1", "us-ascii"])
def test_a_prolog_declaring_another_encoding_than_utf8_is_400(wechat, db_session, encoding):
    # An ASCII body decodes as UTF-8 all the same, but the document says it is something else: not from WeChat.
    xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x")
    assert wechat.post(f'<?xml version="1.0" encoding="{encoding}"?>{xml}').status_code == 400
    assert _count(db_session) == 0
    assert wechat.post(f'<?xml version="1.0" encoding="utf-8"?>{xml}').status_code == 200


@pytest.mark.parametrize("aes", [False, True])
def test_a_text_that_quotes_a_doctype_is_a_message_not_a_dtd(wechat, db_session, aes):
    # In a CDATA section (as WeChat sends every text) "<!DOCTYPE" is what the citizen typed, not markup.
    replies.set_text_setting(replies.DEFAULT_KEY, "已收到")
    for i, content in enumerate(["<!DOCTYPE html> 网页打不开", "<!ENTITY x> <!-- 注释 -->"]):
        assert wechat.text(f"o-coder-{i}", content, aes=aes)["Content"] == "已收到"
    assert db_session.scalar(sa.select(InboundMessage.payload["Content"].as_string()).filter_by(openid="o-coder-0"))
    hidden = '<?x <!-- ?><!DOCTYPE xml [<!ENTITY a "b">]><!-- -->'  # a DTD between look-alikes is still one
    xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x")
    assert wechat.post(hidden + xml, aes=aes).status_code == 400


def test_a_reply_with_characters_xml_cannot_hold_is_still_well_formed(wechat, db_session):
    # Text pasted from a word processor carries a vertical tab for its line breaks; XML 1.0 has no way to write it,
    # and WeChat drops a reply it cannot parse.
    rule("换行", "第一行\x0b第二行\x08。\ufffe")
    assert wechat.text("o-user-1", "换行")["Content"] == "第一行\n第二行。"
    message = TextMessage({"ToUserName": "gh", "FromUserName": "o1", "CreateTime": "1", "MsgType": "text"})
    news = [{"title": "标题\x01", "description": "d\x1f", "url": "https://example.org/a", "image": ""}]
    item = parse_xml(render_reply(news, message))["Articles"]["item"]
    assert (item["Title"], item["Description"]) == ("标题", "d")


def _encrypted_request(account, plain: bytes):
    """A safe-mode delivery whose decrypted frame is given as is (random, length, XML, appid and padding)."""
    import base64

    from wechatpy.crypto.base import WeChatCipher

    key = base64.b64decode(account.aes_key + "=")
    encrypted = base64.b64encode(WeChatCipher(key).encrypt(plain)).decode()
    ts, nonce = str(int(time.time())), "n0nce"
    params = {
        "signature": signature(account.token, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": signature(account.token, ts, nonce, encrypted),
    }
    return params, f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


def _frame(account, xml: bytes, *, length: int | None = None, pad=None) -> bytes:
    body = b"r" * 16 + (len(xml) if length is None else length).to_bytes(4, "big") + xml + account.appid.encode()
    n = 32 - len(body) % 32
    return body + (pad(n) if pad else bytes([n]) * n)


@pytest.mark.parametrize(
    "mangle",
    [
        {"pad": lambda n: bytes([n]) * (n - 1) + b"\x00"},  # no padding at all
        {"pad": lambda n: bytes([n]) * (n - 1) + b"\xc8"},  # more padding than the frame has
        {"pad": lambda n: b"\x07" * (n - 1) + bytes([n])},  # the padding's bytes disagree with its length
        {"length": 10**6},  # the XML's length runs past the frame (one stopping short reads as another appid: 403)
    ],
    ids=["pad-0", "pad-200", "pad-inconsistent", "length-long"],
)
def test_a_badly_framed_safe_mode_body_is_400(wechat, account, db_session, mangle):
    xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x").encode()
    params, body = _encrypted_request(account, _frame(account, xml))
    assert wechat.client.post("/wechat", query_string=params, data=body).status_code == 200  # the frame is right
    xml = simulator.message_xml("o-user-1", "text", {"Content": "hi"}, to="gh_x").encode()
    params, body = _encrypted_request(account, _frame(account, xml, **mangle))
    assert wechat.client.post("/wechat", query_string=params, data=body).status_code == 400
    assert _count(db_session) == 1


def test_a_signed_url_carries_one_delivery_and_its_retries_only(wechat, account, db_session):
    # The URL signature does not cover the body: a signed URL read from a proxy's access log must not carry another
    # message (from any openid) for the five minutes its timestamp stays fresh.
    rule("你好", "您好")
    xml = simulator.message_xml("o-user-1", "text", {"Content": "你好"}, to="gh_x")
    params, body = simulator.signed_request(account, xml)
    first = wechat.client.post("/wechat", query_string=params, data=body)
    assert wechat.client.post("/wechat", query_string=params, data=body).get_data() == first.get_data()  # a retry
    forged = simulator.message_xml("o-officer", "text", {"Content": "绑定 12345678"}, to="gh_x")
    for signed in (params, {**params, "signature": params["signature"].upper()}):
        assert wechat.client.post("/wechat", query_string=signed, data=forged.encode()).status_code == 403
    # Safe mode's URL is signed the same way: taken off a safe-mode delivery, it carries no plaintext body either.
    safe, encrypted = simulator.signed_request(account, xml.replace("你好", "开放日"), aes=True)
    assert wechat.client.post("/wechat", query_string=safe, data=encrypted).status_code == 200
    plain = {k: v for k, v in safe.items() if k not in ("encrypt_type", "msg_signature")}
    assert wechat.client.post("/wechat", query_string=plain, data=forged.encode()).status_code == 403
    assert _count(db_session) == 2


def test_repeated_siblings_parse_in_linear_time():
    # Safe mode parses the envelope before its msg_signature can be checked: 64 KB of one repeated element, from
    # anyone with a fresh timestamp, cost 0.2 s of CPU when each sibling copied the list of those before it.
    # Not a speed target: the growth from 2,000 to 16,000 siblings, ~8x when linear, ~60x when each copied.
    def best(n: int) -> float:
        body = "<xml><Encrypt>x</Encrypt>" + "<a/>" * n + "</xml>"
        assert len(parse_xml(body)["a"]) == n
        return min(_timed(parse_xml, body) for _ in range(5))

    assert best(16_000) / best(2_000) < 25


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started
