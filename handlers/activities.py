"""Menu 「活动报名」: the events whose registration is open or about to open, with links to their pages."""

from __future__ import annotations

from flask import has_request_context, url_for
from wechatpy.messages import BaseMessage

from handlers.router import Reply, router
from server.filters import local_dt
from server.services import events

EVENTS_KEY = "EVENTS_LIST"
MAX_BYTES = 2048  # WeChat's limit for a text reply
NONE_OPEN = "目前没有正在报名或即将开放报名的活动，敬请关注公众号通知。"


def _link(endpoint: str, text: str, **values: int) -> str:
    # WeChat opens absolute links only; the /wechat request carries the host WeChat posts to, our public one.
    if not has_request_context():
        return text
    return f'<a href="{url_for(endpoint, _external=True, **values)}">{text}</a>'


def _entry(n: int, item: events.Listing) -> str:
    event = item.event
    head = f"{n}. {_link('citizen.event_detail', event.title, event_id=event.id)}（{event.kind.label}）"
    if not item.open:
        when = f"{local_dt(event.registration_opens_at, '%m月%d日 %H:%M')} 开放报名，名额 {item.quota} 个"
    elif item.left:
        when = f"报名中，剩余 {item.left} 个名额，{local_dt(event.registration_closes_at, '%m月%d日 %H:%M')} 截止"
    else:
        when = "名额已满，可报名候补"
    return f"{head}\n{when}"


# Inline: two indexed reads of a small table and one Redis MGET, and the links need the request's host.
@router.on("event", "click", key=EVENTS_KEY, inline=True)
def list_events(message: BaseMessage) -> Reply:
    listing = events.open_for_signup()
    mine = _link("citizen.event_mine", "我的报名")
    if not listing:
        return f"{NONE_OPEN}\n\n{mine}"
    head = "近期活动报名（点击活动名称查看详情并报名）："
    more = f"更多活动：{_link('citizen.event_list', '全部活动')}　{mine}"
    parts: list[str] = []
    for n, item in enumerate(listing, 1):
        entry = _entry(n, item)
        if len("\n\n".join([head, *parts, entry, more]).encode()) > MAX_BYTES:
            break  # the rest are on the list page, linked below
        parts.append(entry)
    return "\n\n".join([head, *parts, more])
