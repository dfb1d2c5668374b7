"""The group-commit writer: rows from many threads land once each, in shared transactions."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from models import InboundMessage, MessageStatus
from server.extensions import db
from server.services import inbound
from server.wechat import msglog
from server.wechat.msglog import LogUnavailable, MessageLog


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
    writer.close()


def test_rows_keep_their_fields_and_survive_a_killed_connection(app, committed_db, monkeypatch):
    monkeypatch.setitem(app.config, "WECHAT_LOG_WRITER", "batch")
    writer = MessageLog(app)
    scan = {
        **_data(1),
        "MsgType": "event",
        "Event": "scancode_waitmsg",
        "EventKey": "scan_1",
        "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": '城管 "开放日" <签到>'},
    }
    del scan["MsgId"], scan["Content"]
    assert writer.insert(inbound.row_for(scan, "e:scan")) is True
    # A database restart drops the writer's connection: the next batch reconnects and nothing is lost.
    killed = committed_db.scalars(
        sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE '%json_to_recordset%' AND pid <> pg_backend_pid()"
        )
    ).all()
    assert killed and all(killed)  # this writer's connection (and earlier tests' idle writers)
    committed_db.commit()
    assert writer.insert({**inbound.row_for(_data(2), "m:10002"), "reply": "好的"}) is True
    assert writer.insert(inbound.row_for(_data(2), "m:10002")) is False
    rows = {r.dedupe_key: r for r in committed_db.scalars(sa.select(InboundMessage))}
    assert set(rows) == {"e:scan", "m:10002"}
    row = rows["e:scan"]
    assert (row.msg_type, row.event, row.event_key, row.reply) == ("event", "scancode_waitmsg", "scan_1", None)
    assert row.payload["ScanCodeInfo"]["ScanResult"] == '城管 "开放日" <签到>'
    assert int(row.sent_at.timestamp()) == int(scan["CreateTime"])
    assert row.received_at >= row.sent_at
    assert (rows["m:10002"].reply, rows["m:10002"].status) == ("好的", MessageStatus.OK)
    writer.close()


def test_a_stuck_database_answers_unavailable_instead_of_hanging(app, committed_db, monkeypatch):
    monkeypatch.setitem(app.config, "WECHAT_LOG_WRITER", "batch")
    monkeypatch.setattr(msglog, "WAIT_SECONDS", 0.5)  # also the writer's statement timeout
    writer = MessageLog(app)
    with db.engine.connect() as blocker:
        blocker.execute(sa.insert(InboundMessage.__table__), inbound.row_for(_data(1), "m:10001") | {"status": "OK"})
        # Uncommitted: an INSERT of the same key waits on it, as on a database that stopped answering.
        outcomes: list[str] = []

        def follower() -> None:
            time.sleep(0.1)  # arrives while the first request is writing
            try:
                writer.insert(inbound.row_for(_data(2), "m:10002"))
                outcomes.append("written")
            except LogUnavailable:
                outcomes.append("unavailable")

        thread = threading.Thread(target=follower)
        thread.start()
        started = time.monotonic()
        with pytest.raises(LogUnavailable):
            writer.insert(inbound.row_for(_data(1), "m:10001"))
        thread.join()
        assert time.monotonic() - started < 2.5  # two attempts under the timeout, not a hang
        assert outcomes == ["unavailable"]
        blocker.rollback()
    assert writer.insert(inbound.row_for(_data(1), "m:10001")) is True  # the database is back
    keys = set(committed_db.scalars(sa.select(InboundMessage.dedupe_key)))
    assert keys == {"m:10001", "m:10002"}  # the follower's row went with a later batch: its retry meets it
    writer.close()
