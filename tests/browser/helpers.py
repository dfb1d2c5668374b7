"""What the browser tests share: signed WeChat deliveries to the live server, and seeded followers."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import requests

from models import Follower, InboundMessage, utcnow
from server.extensions import db
from server.wechat import simulator

SCENES = ["qrscene_openday", "qrscene_poster_pudong", "qrscene_livestream", None]
REMARKS = ["开放日志愿者", "热心市民", "社区网格员", "媒体记者", None, None]


def open_officer_photo(page: Any, size: tuple[int, int], client_id: str) -> Any:
    """An officer's uploaded photo, opened on its console page by an editor; the MaterialItem."""
    from server.services import materials
    from tests import factories
    from tests.browser.conftest import login
    from tests.services.test_images import jpeg_bytes

    officer = factories.staff("officer", "officer", unit=factories.unit("浦东分局"))
    factories.staff("editor", "editor")
    item, _ = materials.upload_photo(officer, jpeg_bytes(size, "green"), client_id=client_id)
    login(page, "editor", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/materials/{item.id}")
    return item


def deliver(live_server: Any, account: simulator.Account, xml: str) -> dict[str, Any] | None:
    """POST one signed delivery to the live server's /wechat, as WeChat would; the decoded reply (None: none)."""
    params, body = simulator.signed_request(account, xml)
    res = requests.post(live_server.url + "/wechat", params=params, data=body, timeout=5)
    assert res.status_code == 200, res.text
    return simulator.decode_reply(account, res.text)


def reply_text(reply: dict[str, Any] | None) -> str | None:
    return reply.get("Content") if reply else None


def poll_reply(send: Any, expected: str, *, timeout: float = 3.0) -> str | None:
    """Call send(attempt) until its reply text is `expected` (processes see edits within a second); the last text."""
    deadline, attempt = time.monotonic() + timeout, 0
    while True:
        text = reply_text(send(attempt))
        if text == expected or time.monotonic() > deadline:
            return text
        attempt += 1
        time.sleep(0.2)


def text_message(account: simulator.Account, openid: str, content: str) -> str:
    return simulator.message_xml(openid, "text", {"Content": content}, to=account.original_id)


def click_event(account: simulator.Account, openid: str, key: str, attempt: int = 0) -> str:
    # Events are deduplicated on sender + CreateTime + key: each attempt gets its own CreateTime.
    fields = simulator.event_fields("CLICK", key)
    return simulator.message_xml(
        openid, "event", fields, to=account.original_id, create_time=int(time.time()) + attempt
    )


def seed_followers(count: int = 24) -> list[Follower]:
    """Followers who came over the last 30 days from a few QR scenes (some with remarks, a few gone again),
    with their subscribe/unsubscribe events in the message log, so the charts have something to show."""
    now = utcnow()
    people = []
    for i in range(count):
        first = now - timedelta(days=(i * 7) % 29, hours=i % 9, minutes=i * 7 % 60)
        left = i % 7 == 3
        follower = Follower(
            openid=f"oFan{i:04d}Xk9PqL2mZ8vR3tY6wB1s",
            subscribed=not left,
            first_subscribed_at=first,
            subscribed_at=first,
            unsubscribed_at=first + timedelta(days=1) if left else None,
            source_scene=SCENES[i % len(SCENES)],
            last_scene="qrscene_openday" if i % 5 == 0 else None,
            remark=REMARKS[i % len(REMARKS)],
        )
        people.append(follower)
        db.session.add(follower)
        db.session.add(_event(follower.openid, "subscribe", follower.source_scene, first))
        if left:
            db.session.add(_event(follower.openid, "unsubscribe", None, first + timedelta(days=1)))
        if i % 3 == 0:
            db.session.add(_text(follower.openid, "开放日怎么报名", first + timedelta(minutes=5)))
    db.session.commit()
    return people


def _event(openid: str, event: str, key: str | None, at: Any) -> InboundMessage:
    return InboundMessage(
        dedupe_key=f"e:seed-{openid}-{event}",
        openid=openid,
        msg_type="event",
        event=event,
        event_key=key,
        payload={},
        sent_at=at,
        received_at=at,
        reply="success",
    )


def _text(openid: str, content: str, at: Any) -> InboundMessage:
    return InboundMessage(
        dedupe_key=f"m:seed-{openid}",
        openid=openid,
        msg_type="text",
        payload={"Content": content},
        sent_at=at,
        received_at=at,
        reply="success",
    )
