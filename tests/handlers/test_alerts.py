"""Chat: a sensitive message raises one alert (retries included) and notifies the duty editor; locations and
the CONTACT_NEAREST menu button answer with the nearest contact points."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import Alert
from server.extensions import db
from server.services import alerts, contacts
from server.wechat import simulator
from tests import factories


@pytest.fixture(autouse=True)
def terms(db_session):
    alerts.seed_default_terms()
    alerts.terms_changed()
    yield
    alerts.terms_changed()


def _alerts() -> list[Alert]:
    return list(db.session.scalars(sa.select(Alert)))


def test_violent_enforcement_message_raises_one_alert_even_when_retried(wechat, redis_client):
    msg_id = 880001
    wechat.text("o-fan", "刚才看到城管暴力执法，太过分了", msg_id=msg_id, create_time=1_800_000_000)
    wechat.text("o-fan", "刚才看到城管暴力执法，太过分了", msg_id=msg_id, create_time=1_800_000_000)  # WeChat's retry
    for key in redis_client.scan_iter("wx:reply:*"):  # Redis restarted: the next copy gets past the claim
        redis_client.delete(key)
    wechat.text("o-fan", "刚才看到城管暴力执法，太过分了", msg_id=msg_id, create_time=1_800_000_000)
    found = _alerts()
    assert len(found) == 1
    assert (found[0].source, found[0].ref, found[0].openid) == ("message", str(msg_id), "o-fan")
    assert "暴力执法" in found[0].terms


def test_ordinary_message_raises_nothing(wechat):
    wechat.text("o-fan", "请问开放日怎么报名")
    assert _alerts() == []


def test_duty_editor_gets_a_template_message(wechat, emulator):
    editor = factories.staff("duty1", "editor")
    editor.openid = "o-duty"
    db.session.commit()
    alerts.set_duty([editor.id])
    alerts.save_settings(threshold=5, sla_minutes=30, template_id="tmpl-alert")
    emulator.hook("users", {"openids": ["o-duty"]})
    wechat.text("o-fan", "有人打人了，我已经叫了记者")
    sent = emulator.state()["templates_sent"]
    assert [(t["touser"], t["template_id"]) for t in sent] == [("o-duty", "tmpl-alert")]
    assert "打人" in sent[0]["data"]["thing2"]["value"]


@pytest.fixture
def points(db_session):
    for name, lat, lng in [
        ("外滩工作室", 31.2400, 121.4900),
        ("南京东路联络点", 31.2350, 121.4780),
        ("徐家汇联络点", 31.1950, 121.4370),
        ("人民广场联络点", 31.2310, 121.4740),
    ]:
        contacts.save_point(name=name, address=f"{name}地址", latitude=lat, longitude=lng, hours="9:00-17:00")


def test_location_message_gets_the_three_nearest(wechat, points):
    reply = wechat.send(
        "o-fan", "location", {"Location_X": 31.2304, "Location_Y": 121.4737, "Scale": 15, "Label": "人民广场"}
    )
    text = reply["Content"]
    assert text.index("1. 人民广场联络点（约 70 米）") < text.index("2. 南京东路联络点（约 650 米）")
    assert text.index("2. 南京东路联络点") < text.index("3. 外滩工作室（约 1.9 公里）")
    assert "徐家汇" not in text and "地址：人民广场联络点地址" in text and "开放时间：9:00-17:00" in text


def test_menu_button_asks_for_a_location(wechat):
    reply = wechat.event("o-fan", "CLICK", "CONTACT_NEAREST")
    assert "发送您所在的位置" in reply["Content"]


def test_location_select_button_answers_with_the_nearest(wechat, account, points):
    xml = simulator.message_xml(
        "o-fan",
        "event",
        {"Event": "location_select", "EventKey": "CONTACT_NEAREST"},
        to=account.original_id,
    ).replace(
        "</xml>",
        "<SendLocationInfo><Location_X><![CDATA[31.2304]]></Location_X><Location_Y><![CDATA[121.4737]]></Location_Y>"
        "<Scale><![CDATA[15]]></Scale><Label><![CDATA[人民广场]]></Label><Poiname><![CDATA[]]></Poiname>"
        "</SendLocationInfo></xml>",
    )
    res = wechat.post(xml)
    reply = simulator.decode_reply(account, res.get_data(as_text=True), aes=False)
    assert reply["Content"].startswith("离您最近的城管执法社区联络点：\n\n1. 人民广场联络点（约 70 米）")
