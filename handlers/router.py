"""One router for every WeChat message and event: parsers by type, handlers by (MsgType, Event, EventKey)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, BaseMessage, UnknownMessage
from wechatpy.replies import BaseReply

# What a handler returns: text, a wechatpy reply, a list of articles (news), or None for "success" (no reply).
Reply = str | BaseReply | list[dict[str, Any]] | None
Handler = Callable[[BaseMessage], Reply]
# Redis keys a handler reads for a message; the gateway fetches them in its dedupe claim's round trip.
Peek = Callable[[BaseMessage], Sequence[str]]


def message_event(message: BaseMessage) -> str | None:
    """The lower-case event name for events, None for ordinary messages."""
    if message.type != "event":
        return None
    return getattr(message, "event", None) or str(message._data.get("Event", "")).lower() or None


def message_key(message: BaseMessage) -> str | None:
    key = getattr(message, "key", None)
    if key is None:
        key = message._data.get("EventKey")
    return key or None


def peeked(message: BaseMessage) -> dict[str, bytes | None] | None:
    """The values of the handler's peek keys, fetched with the gateway's claim; None if they were not (Redis down)."""
    return getattr(message, "_peeked", None)


class Router:
    """Picks one handler per message, the most specific route first; unknown types parse as UnknownMessage."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None, str | None], Handler] = {}
        self._prefixes: dict[tuple[str, str | None], list[tuple[str, Handler]]] = {}
        self._parsers: dict[tuple[str, str | None], type[BaseMessage]] = {}

    def on(
        self,
        msg_type: str,
        event: str | None = None,
        key: str | None = None,
        *,
        inline: bool = False,
        peek: Peek | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a handler; `on("*")` is the catch-all; a key ending in "*" matches keys with that prefix.

        inline=True: the handler only reads cached data and cannot block, so it runs in the request thread;
        the others run in a pool under the gateway's time budget.
        peek: the Redis keys the handler will read; their values arrive with the message (see `peeked`).
        """

        def register(handler: Handler) -> Handler:
            route = (msg_type.lower(), event.lower() if event else None, key)
            if route in self._routes:
                raise ValueError(f"route {route} registered twice")
            handler.inline = inline  # type: ignore[attr-defined]
            handler.peek = peek  # type: ignore[attr-defined]
            if key is not None and key.endswith("*"):  # scenes like bind_<token> vary by user
                self._prefixes.setdefault(route[:2], []).append((key[:-1], handler))
            self._routes[route] = handler
            return handler

        return register

    def keys(self, msg_type: str, event: str | None = None) -> set[str]:
        """The exact keys with a handler of their own (a menu key answered in code, say)."""
        event = event.lower() if event else None
        return {k for (t, e, k) in self._routes if (t, e) == (msg_type.lower(), event) and k and not k.endswith("*")}

    def parser(self, msg_type: str, event: str | None = None) -> Callable[[type[BaseMessage]], type[BaseMessage]]:
        """Register a message class for a type wechatpy does not know (or parses wrongly)."""

        def register(cls: type[BaseMessage]) -> type[BaseMessage]:
            self._parsers[(msg_type.lower(), event.lower() if event else None)] = cls
            return cls

        return register

    def parse(self, data: dict[str, Any]) -> BaseMessage:
        """Build a message object from the XML's fields, as wechatpy's parse_message does, plus our parsers."""
        msg_type = str(data["MsgType"]).lower()
        if msg_type != "event":
            cls = self._parsers.get((msg_type, None)) or MESSAGE_TYPES.get(msg_type, UnknownMessage)
            return cls(data)
        event = str(data.get("Event") or "").lower()
        key = data.get("EventKey")
        if event == "subscribe" and isinstance(key, str) and key.startswith("qrscene_"):
            # wechatpy's convention: scan-to-subscribe is its own event with the scene as key
            event = "subscribe_scan"
            data = {**data, "Event": event, "EventKey": key[len("qrscene_") :]}
        cls = self._parsers.get(("event", event)) or EVENT_TYPES.get(event, UnknownMessage)
        message = cls(data)
        if cls is UnknownMessage:
            message.type = "event"  # so event routes and the catch-all still apply
        return message

    def handler_for(self, message: BaseMessage) -> Handler | None:
        event, key = message_event(message), message_key(message)
        if handler := self._routes.get((message.type, event, key)):
            return handler
        if key is not None:
            for prefix, handler in self._prefixes.get((message.type, event), ()):
                if key.startswith(prefix):
                    return handler
        for route in ((message.type, event, None), (message.type, None, None)):
            if handler := self._routes.get(route):
                return handler
        return self._routes.get(("*", None, None))

    def dispatch(self, message: BaseMessage) -> Reply:
        handler = self.handler_for(message)
        return handler(message) if handler else None


router = Router()
