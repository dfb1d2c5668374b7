"""Group commit for the message log: one statement (its own transaction) carries every waiting request's row.

A request's row is durable before its reply leaves (the request waits for the commit), yet the commit, the fsync
and the statement overhead are shared by all the requests of the batch. Replies of slow handlers go with the next
batch, or at once when nothing is being written. Tests use the inline mode, which writes through the request's own
session.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Flask

from models import InboundMessage, MessageStatus, utcnow
from server.extensions import db

log = logging.getLogger(__name__)

_table = InboundMessage.__table__
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
    """Leader/follower group commit: a request that finds no write in progress writes every waiting row itself (its
    own first); requests that arrive meanwhile wait, and the first of them writes the next batch. No writer thread:
    handing each row to one and waking the request back cost more CPU than the INSERT."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.inline = app.config.get("WECHAT_LOG_WRITER", "batch") == "inline"
        self._cond = threading.Condition()
        self._pending: list[_Insert | _Finish] = []
        self._writing = False
        self._conn: sa.Connection | None = None
        self._pid = 0

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
        deadline = time.monotonic() + WAIT_SECONDS
        with self._cond:
            self._pending.append(item)
            while self._writing and not item.done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LogUnavailable("message log write timed out")
                self._cond.wait(remaining)
            batch = self._take() if not item.done.is_set() else None
        if batch is not None:
            self._lead(batch)
        if item.error is not None:
            raise LogUnavailable(str(item.error))
        return item.fresh

    def finish(self, key: str, reply: str, status: MessageStatus) -> None:
        """Record the reply and outcome; written now if no write is in progress, else by the current writer."""
        if self.inline:
            write(db.session.connection(), [], [_Finish(key, reply, status)])
            db.session.commit()
            return
        with self._cond:
            self._pending.append(_Finish(key, reply, status))
            if self._writing:
                return  # the writer picks it up when its batch is done
            batch = self._take()
        self._lead(batch)

    def close(self) -> None:
        """Give the writer's connection back (tests; a process exiting closes it anyway)."""
        with self._cond:
            if self._conn is not None and not self._writing:
                self._conn.close()
                self._conn = None

    def _take(self) -> list[_Insert | _Finish]:
        """Become the writer of everything pending (with the lock held)."""
        self._writing = True
        batch, self._pending = self._pending, []
        return batch

    def _lead(self, batch: list[_Insert | _Finish]) -> None:
        try:
            while True:
                inserts = [i for i in batch if isinstance(i, _Insert)]
                finishes = [i for i in batch if isinstance(i, _Finish)]
                error = self._write(inserts, finishes)
                if error is not None and finishes:
                    log.error("message log lost %d reply records", len(finishes))
                with self._cond:
                    for item in inserts:
                        item.error = error
                        item.done.set()
                    # Replies nobody waits for would be stranded: write them too. Rows have waiters; one of them leads.
                    if not self._pending or any(isinstance(i, _Insert) for i in self._pending):
                        return
                    batch, self._pending = self._pending, []
        finally:
            with self._cond:
                for item in batch:  # only if interrupted: no waiter may be left without an answer
                    if isinstance(item, _Insert) and not item.done.is_set():
                        item.error = item.error or RuntimeError("message log writer interrupted")
                        item.done.set()
                self._writing = False
                self._cond.notify_all()

    def _write(self, inserts: list[_Insert], finishes: list[_Finish]) -> BaseException | None:
        error: BaseException | None = None
        for attempt in (1, 2):  # a connection dropped by a database restart gets one fresh try
            try:
                write(self._connection(), inserts, finishes)
                return None
            except Exception as exc:
                error = exc
                log.warning("message log batch failed (attempt %d): %s", attempt, exc)
                self._conn = _discard(self._conn)
        return error

    def _connection(self) -> sa.Connection:
        # One connection per process, used by one writer at a time, in autocommit: each statement is its own
        # transaction, one round trip, where BEGIN + statement + COMMIT on a pooled checkout took three.
        if self._conn is None or self._pid != os.getpid():  # a connection inherited through fork is the parent's
            with self.app.app_context():
                engine = db.engine
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SET statement_timeout = {int(WAIT_SECONDS * 1000)}")  # a hung database: 503s
            self._conn, self._pid = conn, os.getpid()
        return self._conn


def _discard(conn: sa.Connection | None) -> None:
    """Close a connection that failed; a dead one may fail to close too."""
    if conn is not None:
        try:
            conn.invalidate()
            conn.close()
        except Exception:
            pass
    return None
