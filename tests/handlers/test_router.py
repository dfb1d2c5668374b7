"""The router picks the most specific handler and parses types wechatpy does not know."""

from __future__ import annotations

import pytest
from wechatpy.messages import UnknownMessage

from handlers.router import Router


def _msg(msg_type: str, **fields: str) -> dict:
    return {"ToUserName": "gh", "FromUserName": "o", "CreateTime": "1", "MsgType": msg_type, **fields}


@pytest.fixture
def r() -> Router:
    r = Router()
    r.on("*")(lambda m: "any")
    r.on("event")(lambda m: "event")
    r.on("event", "CLICK")(lambda m: "click")
    r.on("event", "CLICK", key="CONTACT")(lambda m: "contact")
    r.on("text")(lambda m: "text")
    return r


@pytest.mark.parametrize(
    "data,expected",
    [
        (_msg("event", Event="CLICK", EventKey="CONTACT"), "contact"),
        (_msg("event", Event="CLICK", EventKey="OTHER"), "click"),
        (_msg("event", Event="VIEW", EventKey="https://x"), "event"),
        (_msg("event", Event="never_heard_of_it"), "event"),
        (_msg("text", Content="hi", MsgId="1"), "text"),
        (_msg("shortvideo", MediaId="m", MsgId="2"), "any"),
        (_msg("brand_new_type", MsgId="3"), "any"),
    ],
)
def test_most_specific_route_wins(r, data, expected):
    assert r.dispatch(r.parse(data)) == expected


def test_scan_to_subscribe_carries_the_scene(r):
    message = r.parse(_msg("event", Event="subscribe", EventKey="qrscene_open_day"))
    assert message.event == "subscribe_scan"
    assert message.scene_id == "open_day"


def test_unknown_event_still_routes_as_event():
    message = Router().parse(_msg("event", Event="future_event"))
    assert isinstance(message, UnknownMessage)
    assert message.type == "event"


def test_registered_parser_is_used():
    r = Router()

    @r.parser("event", "mystery")
    class Mystery(UnknownMessage):
        pass

    assert type(r.parse(_msg("event", Event="MYSTERY"))) is Mystery


def test_a_route_cannot_be_registered_twice(r):
    with pytest.raises(ValueError):
        r.on("text")(lambda m: "again")


def test_prefix_keys_route_varying_scenes():
    r = Router()
    r.on("event", "scan")(lambda m: "scan")
    r.on("event", "scan", key="bind_*")(lambda m: "bind")
    assert r.dispatch(r.parse(_msg("event", Event="SCAN", EventKey="bind_abc123"))) == "bind"
    assert r.dispatch(r.parse(_msg("event", Event="SCAN", EventKey="poster_7"))) == "scan"


def test_inline_flag_is_kept_on_the_handler():
    r = Router()
    keys = lambda m: [f"k:{m.source}"]  # noqa: E731
    fast = r.on("text", inline=True, peek=keys)(lambda m: "fast")
    slow = r.on("event", "subscribe")(lambda m: "slow")
    assert fast.inline is True and slow.inline is False
    assert fast.peek is keys and slow.peek is None
