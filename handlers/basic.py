"""Built-in handlers: keyword auto-replies, subscribe/unsubscribe/scan, menu clicks, locations."""

from __future__ import annotations

from datetime import UTC, datetime

from wechatpy.events import LocationEvent, ScanEvent, SubscribeEvent, SubscribeScanEvent, UnsubscribeEvent
from wechatpy.messages import BaseMessage, TextMessage, UnknownMessage

from handlers.router import Reply, message_key, peeked, router
from server.services import alerts, binding, chat, followers, materials, replies, tips


def _spec_reply(spec: replies.ReplySpec | None) -> Reply:
    return spec.as_reply() if spec else None


@router.on("text", inline=True, peek=lambda m: chat.flow_keys(m.source))  # cached rules; a binding code: one update
def answer_text(message: TextMessage) -> Reply:
    alerts.scan_text(message.source, message.content, source="message", ref=str(message.id))
    # One's own tracking number before a binding code: the same shape, and asking costs no binding attempt.
    if (reply := tips.reply_to_tracking_number(message.source, message.content)) is not None:
        return reply
    if (reply := binding.reply_to_text(message.source, message.content)) is not None:
        return reply
    flows = chat.open_flows(message.source, peeked(message))  # both checks below, with no round trip of their own
    if flows.photo_burst and (reply := materials.attach_chat_text(message.source, message.content)) is not None:
        return reply
    if flows.tip_draft:
        # A word too short to be a description that a keyword answers (开放日, 随手拍): the keyword's reply; the
        # draft stays open for the description still to come.
        text = (message.content or "").strip()
        if (
            len(text) < tips.DESCRIPTION_MIN
            and text not in tips.CHAT_COMMANDS
            and (spec := replies.match_keyword(text))
        ):
            return _spec_reply(spec)
        if (reply := tips.reply_to_chat_text(message.source, message.content, _at(message))) is not None:
            return reply
    if (message.content or "").strip() in tips.CANCEL_WORDS:  # no draft open (it would have answered above)
        return tips.NOTHING_TO_CANCEL
    return _spec_reply(replies.match_keyword(message.content)) or replies.default_reply() or None


@router.on("event", "subscribe")
def welcome(message: SubscribeEvent) -> Reply:
    followers.subscribe(message.source, _at(message))
    return replies.welcome_message()


@router.on("event", "subscribe_scan")
def welcome_from_scene(message: SubscribeScanEvent) -> Reply:
    followers.subscribe(message.source, _at(message), scene=message.scene_id)
    return _spec_reply(replies.welcome_for_scene(message.scene_id or ""))  # with the channel QR's own reply


@router.on("event", "unsubscribe")
def farewell(message: UnsubscribeEvent) -> Reply:
    followers.unsubscribe(message.source, _at(message))
    return None  # WeChat shows nothing to a user who has left


@router.on("event", "scan")
def scanned(message: ScanEvent) -> Reply:
    followers.scan(message.source, message.scene_id or "", _at(message))  # a SCAN without a scene is still a scan
    return _spec_reply(replies.scene_reply(message.scene_id or ""))  # a channel QR's reply; none: no reply


@router.on("event", "click", inline=True)
def menu_click(message: BaseMessage) -> Reply:
    key = message_key(message) or ""
    return _spec_reply(replies.click_reply(key)) or replies.default_reply() or None


@router.on("event", "view", inline=True)
def menu_view(message: BaseMessage) -> Reply:
    return None  # recorded in the message log; WeChat opens the page itself


@router.on("event", "location")
def location_report(message: LocationEvent) -> Reply:
    followers.record_location(message.source, message.latitude, message.longitude, message.precision, _at(message))
    return None


@router.on("*", inline=True)
def anything_else(message: BaseMessage) -> Reply:
    """Unknown and not-yet-handled types: recorded by the gateway; a citizen's message of a known type gets the
    default reply, an event or a type wechatpy does not know (perhaps not from a person at all) "success"."""
    if message.type == "event" or isinstance(message, UnknownMessage):
        return None
    return replies.default_reply() or None


def _at(message: BaseMessage) -> datetime:
    """WeChat's CreateTime (validated by the gateway) as UTC."""
    return datetime.fromtimestamp(int(message._data["CreateTime"]), UTC)
