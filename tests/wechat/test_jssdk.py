"""The JS-SDK config: WeChat's signature, checked against the example in its documentation."""

from __future__ import annotations

from server.wechat import jssdk
from tests.conftest import APPID


def test_signature_matches_wechats_published_example():
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    url = "http://mp.weixin.qq.com?params=value"
    expected = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    assert jssdk.signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, url) == expected
    assert jssdk.signature(ticket, "Wm3WZYTPz0wzccnW", "1414587457", url + "#top") == expected  # no fragment


def test_config_is_signed_with_the_shared_ticket(app, emulator, redis_client):
    with app.app_context():
        url = "https://example.cn/admin/events/1/scan?session=2"
        config = jssdk.jsapi_config(url + "#x")
        again = jssdk.jsapi_config(url)
    (ticket,) = emulator.state()["jsapi_tickets"]
    assert config["appId"] == APPID and config["nonceStr"] != again["nonceStr"]
    assert config["signature"] == jssdk.signature(ticket, config["nonceStr"], config["timestamp"], url)
    assert emulator.state()["ticket_fetches"] == 1
