"""Every message and event type WeChat documents, as WeChat sends it, in plaintext and safe mode.

Each reply must be "success" or well-formed XML addressed back to the sender; each delivery is logged once;
a retry is answered identically.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from models import InboundMessage, MessageStatus
from server.wechat import simulator
from server.wechat.protocol import parse_xml

ME, USER = "gh_test0000000", "oUser_corpus_000000000000001"


def _xml(body: str, *, msg_id: int | None = None) -> str:
    head = (
        f"<ToUserName><![CDATA[{ME}]]></ToUserName><FromUserName><![CDATA[{USER}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
    )
    tail = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return f"<xml>{head}{body}{tail}</xml>"


CORPUS = {
    "text": "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好，城管]]></Content>",
    "image": "<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl>"
    "<MediaId><![CDATA[media_id_1]]></MediaId>",
    "voice": "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m2]]></MediaId><Format><![CDATA[amr]]></Format>"
    "<Recognition><![CDATA[占道经营]]></Recognition>",
    "video": "<MsgType><![CDATA[video]]></MsgType><MediaId><![CDATA[m3]]></MediaId>"
    "<ThumbMediaId><![CDATA[t3]]></ThumbMediaId>",
    "shortvideo": "<MsgType><![CDATA[shortvideo]]></MsgType><MediaId><![CDATA[m4]]></MediaId>"
    "<ThumbMediaId><![CDATA[t4]]></ThumbMediaId>",
    "location": "<MsgType><![CDATA[location]]></MsgType><Location_X>23.134521</Location_X>"
    "<Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[位置信息]]></Label>",
    "link": "<MsgType><![CDATA[link]]></MsgType><Title><![CDATA[公众平台官网链接]]></Title>"
    "<Description><![CDATA[描述]]></Description><Url><![CDATA[https://example.org/a]]></Url>",
    "subscribe": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>",
    "subscribe_scene": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"
    "<EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>",
    "unsubscribe": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event>"
    "<EventKey><![CDATA[]]></EventKey>",
    "scan": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event>"
    "<EventKey><![CDATA[SCENE_VALUE]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>",
    "location_event": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event>"
    "<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>",
    "click": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>"
    "<EventKey><![CDATA[EVENTKEY]]></EventKey>",
    "view": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[VIEW]]></Event>"
    "<EventKey><![CDATA[https://example.org/m/]]></EventKey><MenuId>1</MenuId>",
    "scancode_push": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_push]]></Event>"
    "<EventKey><![CDATA[6]]></EventKey><ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
    "<ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>",
    "scancode_waitmsg": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_waitmsg]]></Event>"
    "<EventKey><![CDATA[6]]></EventKey><ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
    "<ScanResult><![CDATA[2]]></ScanResult></ScanCodeInfo>",
    "pic_sysphoto": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[pic_sysphoto]]></Event>"
    "<EventKey><![CDATA[6]]></EventKey><SendPicsInfo><Count>1</Count><PicList><item>"
    "<PicMd5Sum><![CDATA[1b5f7c23b5bf75682a53e7b6d163e185]]></PicMd5Sum></item></PicList></SendPicsInfo>",
    "pic_photo_or_album": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[pic_photo_or_album]]></Event>"
    "<EventKey><![CDATA[6]]></EventKey><SendPicsInfo><Count>2</Count><PicList>"
    "<item><PicMd5Sum><![CDATA[5a75aaca956d97be686719218f275c6b]]></PicMd5Sum></item>"
    "<item><PicMd5Sum><![CDATA[6a75aaca956d97be686719218f275c6b]]></PicMd5Sum></item></PicList></SendPicsInfo>",
    "pic_weixin": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[pic_weixin]]></Event>"
    "<EventKey><![CDATA[6]]></EventKey><SendPicsInfo><Count>0</Count><PicList></PicList></SendPicsInfo>",
    "location_select": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[location_select]]></Event>"
    "<EventKey><![CDATA[6]]></EventKey><SendLocationInfo><Location_X><![CDATA[23]]></Location_X>"
    "<Location_Y><![CDATA[113]]></Location_Y><Scale><![CDATA[15]]></Scale><Label><![CDATA[ 广州市海珠区]]></Label>"
    "<Poiname><![CDATA[]]></Poiname></SendLocationInfo>",
    "view_miniprogram": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[view_miniprogram]]></Event>"
    "<EventKey><![CDATA[pages/index/index]]></EventKey><MenuId>MENUID</MenuId>",
    "templatesendjobfinish": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
    "<MsgID>200163836</MsgID><Status><![CDATA[success]]></Status>",
    "masssendjobfinish": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event>"
    "<MsgID>1000001625</MsgID><Status><![CDATA[err(30003)]]></Status><TotalCount>0</TotalCount>"
    "<FilterCount>0</FilterCount><SentCount>0</SentCount><ErrorCount>0</ErrorCount>",
    "subscribe_msg_popup": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>"
    "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>"
    "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>"
    "</SubscribeMsgPopupEvent>",
    "publishjobfinish": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[PUBLISHJOBFINISH]]></Event>"
    "<PublishEventInfo><publish_id>2247503051</publish_id><publish_status>2</publish_status>"
    "<fail_idx>1</fail_idx><fail_idx>2</fail_idx></PublishEventInfo>",
    "unknown_future_event": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[brand_new_event]]></Event>"
    "<Payload><A>1</A></Payload>",
}
MESSAGES = {"text", "image", "voice", "video", "shortvideo", "location", "link"}


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "safe"])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_documented_type_is_answered_and_logged_once(wechat, account, db_session, name, aes):
    msg_id = 7_000_000_000 + sorted(CORPUS).index(name) if name in MESSAGES else None
    xml = _xml(CORPUS[name], msg_id=msg_id)
    first = wechat.post(xml, aes=aes)
    assert first.status_code == 200, (name, first.get_data(as_text=True))
    reply = simulator.decode_reply(account, first.get_data(as_text=True), aes=aes)
    if reply is not None:
        assert reply["ToUserName"] == USER and reply["FromUserName"] == ME
        assert reply["MsgType"] in {"text", "image", "news", "voice", "video", "music"}
        assert isinstance(parse_xml(first.get_data(as_text=True)), dict)
    retry = wechat.post(xml, aes=aes)
    assert simulator.decode_reply(account, retry.get_data(as_text=True), aes=aes) == reply
    rows = db_session.scalars(sa.select(InboundMessage)).all()
    assert len(rows) == 1 and rows[0].openid == USER
    assert rows[0].status is MessageStatus.OK  # no handler choked on the shape
