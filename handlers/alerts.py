"""Menu buttons for the community contact points: ask for a location, or answer one picked with location_select.

(Alerts need no handler of their own: the text handler in basic.py scans every message.)
"""

from __future__ import annotations

from wechatpy.events import LocationSelectEvent
from wechatpy.messages import BaseMessage

from handlers.router import Reply, router
from server.services import contacts

NEAREST_KEY = "CONTACT_NEAREST"
ASK_LOCATION = "请点击输入框旁的「+」，选择「位置」发送您所在的位置，我们会告诉您最近的三个城管执法社区联络点。"


@router.on("event", "click", key=NEAREST_KEY, inline=True)
def ask_for_location(message: BaseMessage) -> Reply:
    return ASK_LOCATION


@router.on("event", "location_select", key=NEAREST_KEY)
def nearest_to_picked(message: LocationSelectEvent) -> Reply:
    try:
        lat, lng = float(message.location_x), float(message.location_y)
    except (KeyError, TypeError, ValueError):
        return ASK_LOCATION
    return contacts.nearest_reply(lat, lng) or "暂未公布社区联络点，请拨打城管服务热线 12345。"
