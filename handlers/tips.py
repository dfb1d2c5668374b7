"""Chat side of tips: photos and a location sent in chat are assembled into one tip (filled in by the feature)."""

from __future__ import annotations

from datetime import UTC, datetime

from wechatpy.messages import LocationMessage

from handlers.router import Reply, router
from server.services import contacts, replies, tips


@router.on("location")
def location_sent(message: LocationMessage) -> Reply:
    at = datetime.fromtimestamp(int(message._data["CreateTime"]), UTC)
    lat, lng = message.location
    if (reply := tips.attach_chat_location(message.source, lat, lng, message.label, at)) is not None:
        return reply
    return contacts.nearest_reply(lat, lng) or replies.default_reply() or None
