"""Retries that arrive at the same moment on different processes: processed once, answered the same."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import sqlalchemy as sa

from models import Follower, InboundMessage
from server.wechat import simulator
from tests.factories import rule


def _burst(live_server, account, xml: str, copies: int, *, aes: bool) -> list[dict | None]:
    """Send `copies` copies of one delivery at once, each signed afresh as WeChat does for a retry."""
    barrier = threading.Barrier(copies)
    results: list = [None] * copies

    def send(i: int) -> None:
        params, body = simulator.signed_request(account, xml, aes=aes)
        barrier.wait()
        res = requests.post(live_server.url + "/wechat", params=params, data=body, timeout=10)
        results[i] = (res.status_code, simulator.decode_reply(account, res.text, aes=aes))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 for status, _ in results)
    return [reply for _, reply in results]


@pytest.mark.parametrize("aes", [False, True])
def test_concurrent_copies_of_a_message(live_server, committed_db, account, aes):
    rule("你好", "您好，城管在线")
    xml = simulator.message_xml(
        "o-live", "text", {"Content": "你好"}, to=account.original_id, msg_id=int(time.time() * 1000)
    )
    replies = _burst(live_server, account, xml, 12, aes=aes)
    assert {r["Content"] for r in replies} == {"您好，城管在线"}
    assert len({r["CreateTime"] for r in replies}) == 1  # the very same reply, not twelve equal ones
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 1


def test_concurrent_copies_of_a_subscribe_event(live_server, committed_db, account):
    xml = simulator.message_xml(
        "o-live-fan", "event", {"Event": "subscribe", "EventKey": "qrscene_live"}, to=account.original_id
    )
    replies = _burst(live_server, account, xml, 12, aes=False)
    assert len({r["Content"] for r in replies}) == 1
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 1
    follower = committed_db.scalars(sa.select(Follower)).one()
    assert follower.source_scene == "live"
