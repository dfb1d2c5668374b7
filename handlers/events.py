"""Message classes for pushes that wechatpy 2.0.0a26 does not parse."""

from __future__ import annotations

from typing import Any

from wechatpy.events import BaseEvent
from wechatpy.fields import StringField

from handlers.router import router


@router.parser("event", "publishjobfinish")
class PublishJobFinishEvent(BaseEvent):
    """freepublish finished: <PublishEventInfo> carries publish_id, publish_status, article_id, article_detail."""

    event = "publishjobfinish"
    key = StringField("EventKey", None)

    @property
    def info(self) -> dict[str, Any]:
        info = self._data.get("PublishEventInfo")
        return info if isinstance(info, dict) else {}

    @property
    def publish_id(self) -> str | None:
        return self.info.get("publish_id")

    @property
    def publish_status(self) -> int | None:
        value = self.info.get("publish_status")
        return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else None

    @property
    def article_id(self) -> str | None:
        return self.info.get("article_id")

    @property
    def article_urls(self) -> list[str]:
        detail = self.info.get("article_detail")
        items = detail.get("item", []) if isinstance(detail, dict) else []
        items = items if isinstance(items, list) else [items]
        return [i["article_url"] for i in items if isinstance(i, dict) and i.get("article_url")]
