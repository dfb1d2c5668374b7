"""The group-commit writer: rows from many threads land once each, in shared transactions."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from models import InboundMessage, MessageStatus
from server.services import inbound
from server.wechat.msglog import MessageLog


def _data(i: int) -> dict:
    return {
        "ToUserName": "gh",
        "FromUserName": f"o-{i}",
        "CreateTime": str(int(time.time())),
        "MsgType": "text",
        "Content": f"m{i}",
        "MsgId": str(10_000 + i),
    }


def test_concurrent_inserts_and_duplicates_are_decided_once(app, committed_db, monkeypatch):
    monkeypatch.setitem(app.config, "WECHAT_LOG_WRITER", "batch")
    writer = MessageLog(app)
    results: dict[int, list[bool]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def send(i: int) -> None:
        key = f"m:{10_000 + i % 20}"  # 20 distinct deliveries, each sent twice
        barrier.wait()
        fresh = writer.insert(inbound.row_for(_data(i % 20), key))
        with lock:
            results.setdefault(i % 20, []).append(fresh)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(sorted(flags) == [False, True] for flags in results.values())
    writer.finish("m:10000", "<xml>reply</xml>", MessageStatus.ERROR)
    for _ in range(100):  # the reply write is not awaited
        committed_db.rollback()
        row = committed_db.scalars(sa.select(InboundMessage).filter_by(dedupe_key="m:10000")).one()
        if row.reply:
            break
        time.sleep(0.02)
    assert (row.reply, row.status) == ("<xml>reply</xml>", MessageStatus.ERROR)
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 20
