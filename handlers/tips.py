"""Chat side of tips: photos, a location and a text sent in chat are assembled into one tip.

The text hook sits in handlers.basic (`tips.reply_to_chat_text`, one Redis GET when no tip is being assembled).
"""

from __future__ import annotations

from datetime import UTC, datetime

from wechatpy.messages import ImageMessage, LocationMessage

from handlers.router import Reply, router
from server.services import contacts, replies, tips


def _at(message: ImageMessage | LocationMessage) -> datetime:
    return datetime.fromtimestamp(int(message._data["CreateTime"]), UTC)


@router.on("image")  # writes (a draft row, a photo row) and enqueues the download: runs in the handler pool
def image_sent(message: ImageMessage) -> Reply:
    return tips.receive_chat_image(message.source, message.media_id, _at(message))


@router.on("location")
def location_sent(message: LocationMessage) -> Reply:
    lat, lng = message.location
    if (reply := tips.attach_chat_location(message.source, lat, lng, message.label, _at(message))) is not None:
        return reply
    return contacts.nearest_reply(lat, lng) or replies.default_reply() or None
