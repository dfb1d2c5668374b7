"""Group commit for the message log: one statement (its own transaction) carries every waiting request's row.

A request's row is durable before its reply leaves (the request waits for the commit), yet the commit, the fsync
and the statement overhead are shared by all the requests of the batch. Replies are written back the same way
without waiting. Tests use the inline mode, which writes through the request's own session.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Flask

from models import InboundMessage, MessageStatus, utcnow
from server.extensions import db

log = logging.getLogger(__name__)

_table = InboundMessage.__table__
MAX_BATCH = 500
WAIT_SECONDS = 3.0


class LogUnavailable(Exception):
    """The database did not take the row: the caller must not answer as if the message were recorded."""


@dataclass
class _Insert:
    row: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    fresh: bool = False
    error: BaseException | None = None


@dataclass
class _Finish:
    key: str
    reply: str
    status: MessageStatus


def _insert_statement(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # The unique key decides between copies, also copies that raced past Redis on other processes.
    return insert(_table).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(_table.c.dedupe_key)


_finish_statement = (
    sa.update(_table)
    .where(_table.c.dedupe_key == sa.bindparam("key"))
    .values(reply=sa.bindparam("reply"), status=sa.bindparam("status"))
)


# PostgreSQL: one fixed statement whatever the batch size, its rows in one JSON parameter: the driver parses and plans
# it once, and one json.dumps (C) replaces the per-element adaptation of ten arrays.
_PG_INSERT = """
INSERT INTO inbound_message (dedupe_key, openid, msg_type, event, event_key, payload, sent_at, received_at, status,
                             reply)
SELECT dedupe_key, openid, msg_type, event, event_key, payload, sent_at, received_at, status, reply
FROM json_to_recordset(%s::json) AS r(dedupe_key varchar, openid varchar, msg_type varchar, event varchar,
                                       event_key varchar, payload json, sent_at timestamptz, received_at timestamptz,
                                       status varchar, reply text)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING dedupe_key
"""
_PG_FINISH = """
UPDATE inbound_message AS m SET reply = u.reply, status = u.status
FROM json_to_recordset(%s::json) AS u(key varchar, reply text, status varchar)
WHERE m.dedupe_key = u.key
"""


def write(conn: sa.Connection, inserts: list[_Insert], finishes: list[_Finish]) -> None:
    """One round of writes on one connection; marks each insert fresh or duplicate."""
    postgres = conn.dialect.name == "postgresql"
    if inserts:
        first: dict[str, _Insert] = {}
        for item in inserts:  # two copies in one batch: the first is the one, the second a duplicate
            first.setdefault(item.row["dedupe_key"], item)
        now = utcnow()
        # rows logged before their reply (slow handlers) have none yet
        rows = [{"status": MessageStatus.OK, "reply": None, "received_at": now, **item.row} for item in first.values()]
        if postgres:
            doc = json.dumps(
                [
                    {
                        **row,
                        "status": row["status"].name,
                        "sent_at": row["sent_at"].isoformat(),
                        "received_at": row["received_at"].isoformat(),
                    }
                    for row in rows
                ],
                ensure_ascii=False,
            )
            created = {r[0] for r in conn.exec_driver_sql(_PG_INSERT, (doc,))}
        else:
            created = set(conn.execute(_insert_statement(conn.dialect.name), rows).scalars())
        for key, item in first.items():
            item.fresh = key in created
    if finishes:
        if postgres:
            doc = json.dumps([{"key": f.key, "reply": f.reply, "status": f.status.name} for f in finishes])
            conn.exec_driver_sql(_PG_FINISH, (doc,))
        else:
            conn.execute(
                _finish_statement, [{"key": f.key, "reply": f.reply, "status": f.status.name} for f in finishes]
            )


class MessageLog:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.inline = app.config.get("WECHAT_LOG_WRITER", "batch") == "inline"
        self._queue: queue.SimpleQueue[_Insert | _Finish] = queue.SimpleQueue()
        self._pid = 0
        self._lock = threading.Lock()

    def insert(self, row: dict[str, Any]) -> bool:
        """True if this delivery is new, False if the log already has it; LogUnavailable if it could not be told."""
        item = _Insert(row)
        if self.inline:
            try:
                write(db.session.connection(), [item], [])
                db.session.commit()
            except sa.exc.SQLAlchemyError as exc:
                db.session.rollback()
                raise LogUnavailable(str(exc)) from exc
            return item.fresh
        self._ensure_writer()
        self._queue.put(item)
        if not item.done.wait(WAIT_SECONDS) or item.error is not None:
            raise LogUnavailable(str(item.error or "message log write timed out"))
        return item.fresh

    def finish(self, key: str, reply: str, status: MessageStatus) -> None:
        """Record the reply and outcome; not awaited (the reply also lives in Redis for the retries)."""
        if self.inline:
            write(db.session.connection(), [], [_Finish(key, reply, status)])
            db.session.commit()
            return
        self._ensure_writer()
        self._queue.put(_Finish(key, reply, status))

    def _ensure_writer(self) -> None:
        # One writer thread per process; a thread started before gunicorn forks does not exist in the child.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                with self.app.app_context():
                    engine = db.engine
                threading.Thread(target=self._run, args=(engine,), name="wechat-msglog", daemon=True).start()
                self._pid = os.getpid()

    def _run(self, engine: sa.Engine) -> None:
        # One connection held for the thread's life, in autocommit: each statement is its own transaction, one round
        # trip, where BEGIN + statement + COMMIT on a pooled checkout took three and tripled the writer's CPU.
        conn: sa.Connection | None = None
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            inserts = [i for i in batch if isinstance(i, _Insert)]
            finishes = [i for i in batch if isinstance(i, _Finish)]
            error: BaseException | None = None
            for attempt in (1, 2):  # a connection dropped by a database restart gets one fresh try
                try:
                    if conn is None:
                        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    write(conn, inserts, finishes)
                    error = None
                    break
                except Exception as exc:
                    error = exc
                    log.warning("message log batch failed (attempt %d): %s", attempt, exc)
                    conn = _discard(conn)
            if error is not None and finishes:
                log.error("message log lost %d reply records", len(finishes))
            for item in inserts:
                item.error = error
                item.done.set()


def _discard(conn: sa.Connection | None) -> None:
    """Close a connection that failed; a dead one may fail to close too."""
    if conn is not None:
        try:
            conn.invalidate()
            conn.close()
        except Exception:
            pass
    return None
