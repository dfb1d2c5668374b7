"""Staff binding in chat: a scanned bind_<token> QR scene (prefix routes here) or a typed binding code
(the text handler in handlers.basic asks `binding.reply_to_text` first)."""

from __future__ import annotations

from datetime import UTC, datetime

from wechatpy.events import ScanEvent, SubscribeScanEvent

from handlers.router import Reply, router
from server.services import ServiceError, binding, followers


def _answer_scene(openid: str, scene: str) -> Reply:
    try:
        return binding.describe(binding.bind_by_scene(openid, scene))
    except ServiceError as exc:
        return str(exc)


@router.on("event", "scan", key=f"{binding.SCENE_PREFIX}*")
def scanned_binding_qr(message: ScanEvent) -> Reply:
    return _answer_scene(message.source, message.scene_id)


@router.on("event", "subscribe_scan", key=f"{binding.SCENE_PREFIX}*")
def subscribed_from_binding_qr(message: SubscribeScanEvent) -> Reply:
    # A follower all the same, but the binding QR is not a marketing source scene.
    followers.subscribe(message.source, datetime.fromtimestamp(int(message._data["CreateTime"]), UTC))
    return _answer_scene(message.source, message.scene_id)
