"""Chat side of tips: photos, a location and a text sent in chat are assembled into one tip.

A bound officer's photos are not tips: they become material items (素材库), and a location sent right after them
is their position. The text hook sits in handlers.basic (`materials.attach_chat_text`, then
`tips.reply_to_chat_text`: one Redis GET each when nothing is being assembled).
"""

from __future__ import annotations

from datetime import UTC, datetime

from wechatpy.messages import ImageMessage, LocationMessage

from handlers.router import Reply, router
from server.services import chat, contacts, materials, replies, tips


def _at(message: ImageMessage | LocationMessage) -> datetime:
    return datetime.fromtimestamp(int(message._data["CreateTime"]), UTC)


@router.on("image")  # writes (a draft row, a photo row) and enqueues the download: runs in the handler pool
def image_sent(message: ImageMessage) -> Reply:
    if not message.media_id:  # an old client's photo comes as a link only, which WeChat's media API cannot fetch
        return "照片未能接收，请在微信中重新发送一次。"
    chat.open_flows(message.source)  # if Redis lost its data, the open burst or draft is pointed at again first
    if (officer := materials.officer_by_openid(message.source)) is not None:
        return materials.receive_chat_image(officer, message.media_id, _at(message))
    return tips.receive_chat_image(message.source, message.media_id, _at(message))


@router.on("location")
def location_sent(message: LocationMessage) -> Reply:
    lat, lng = message.location
    flows = chat.open_flows(message.source)
    if flows.photo_burst and (reply := materials.attach_chat_location(message.source, lat, lng, message.label)):
        return reply
    if flows.tip_draft and (reply := tips.attach_chat_location(message.source, lat, lng, message.label, _at(message))):
        return reply
    return contacts.nearest_reply(lat, lng) or replies.default_reply() or None
