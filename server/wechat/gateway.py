"""Process each WeChat delivery exactly once and give every copy of it the same reply, within WeChat's 5 s."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask
from wechatpy.messages import BaseMessage

from handlers import router
from handlers.router import Handler
from models import MessageStatus
from server.extensions import db, get_redis
from server.services import inbound, replies
from server.wechat.msglog import MessageLog
from server.wechat.protocol import EMPTY_REPLY, ProtocolError, render_reply

log = logging.getLogger(__name__)

REPLY_TTL = 120  # WeChat retries 3 times over about 15 s; later copies still meet the database's unique key
PENDING = b""
# A claim this much older than the handler's budget with no reply anywhere was left by a process that died: a retry
# takes it over (else every retry would wait on it until it expired, and the message be lost). Its age is read from
# its TTL in Redis, not from clocks that differ between hosts.
ABANDONED_AFTER = 3.0
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == '' and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '', 'EX', ARGV[2])
  return 1
end
return 0
"""
POOLED_STATEMENTS = 30.0  # seconds a pooled handler's statements may run, counted from its start
_inline = threading.local()  # deadline: the monotonic time by which an inline handler's statements must end


@contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    _inline.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _inline.deadline = None


@sa.event.listens_for(sa.orm.Session, "after_begin")
def _bound_inline_statements(session: sa.orm.Session, transaction: Any, connection: sa.Connection) -> None:
    """An inline handler runs in the request thread with no timeout of its own: a statement of it waiting on a lock
    (a migration, a long transaction on the same row) would hold the reply past WeChat's 5 s. PostgreSQL cancels it
    at the handler's deadline instead, and the handler's failure gets the default reply out in time."""
    deadline = getattr(_inline, "deadline", None)
    if deadline is not None and connection.dialect.name == "postgresql":
        ms = max(1, int((deadline - time.monotonic()) * 1000))
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")


class Gateway:
    """Claims a delivery in Redis, logs it (group commit), runs its handler under a budget, shares the reply."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.timeout = app.config["WECHAT_HANDLER_TIMEOUT"]
        self.log = MessageLog(app)
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        # Created per process: a pool made before gunicorn forks has no threads in the child.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wechat-handler")
                    self._pid = os.getpid()
        assert self._executor is not None
        return self._executor

    def handle(self, data: dict[str, Any], key: str, *, signature: str = "") -> str:
        """The plaintext reply (XML or "success") for this delivery; LogUnavailable if it cannot be recorded;
        ProtocolError (403) if the URL's signature already carried another message."""
        deadline = time.monotonic() + self.timeout + 1.0
        message = router.parse(data)
        handler = router.handler_for(message)
        taken_over = False
        if self._claim(key, message, handler, signature) is False:
            reply = self._await_reply(key, deadline)
            if reply is not None:
                return reply
            taken_over = True
            log.warning("the first copy of %s was left unanswered (its process died?): processed by this one", key)
        if handler is None or getattr(handler, "inline", False):
            # Fast handlers answer first and the log row carries the reply: one write, and retries read it there.
            # A copy that slipped past a lost Redis claim meets the unique key and gets the first copy's reply.
            reply, status = self._run_inline(handler, message, key)
            if self._log(data, key, reply=reply, status=status):
                return reply
            return self._await_stored(key, deadline)
        # Slow handlers act on a delivery only once it is durably logged. A copy that took over finds the dead copy's
        # row, logged and never answered: it runs the handler for it.
        if not self._log(data, key) and not taken_over:
            return self._await_stored(key, deadline)
        reply, status = self._run_pooled(handler, message, key)
        self._publish(key, reply)  # retries waiting on Redis get it at once
        self.log.finish(key, reply, status)
        return reply

    def _log(self, data: dict[str, Any], key: str, **outcome: Any) -> bool:
        try:
            return self.log.insert({**inbound.row_for(data, key), **outcome})
        except Exception:
            self._release(key)  # let WeChat's retry try again rather than wait for a reply that never comes
            raise

    def _run_inline(self, handler: Handler | None, message: BaseMessage, key: str) -> tuple[str, MessageStatus]:
        if handler is None:
            return EMPTY_REPLY, MessageStatus.OK
        try:
            with _bounded(self.timeout):
                reply = handler(message)
            return render_reply(reply, message), MessageStatus.OK
        except Exception:
            log.exception("wechat handler failed for %s; default reply sent", key)
            db.session.rollback()
            return self._default(message), MessageStatus.ERROR

    def _run_pooled(self, handler: Handler, message: BaseMessage, key: str) -> tuple[str, MessageStatus]:
        future = self._pool().submit(self._call, handler, message)
        try:
            return future.result(timeout=self.timeout), MessageStatus.OK
        except FutureTimeout:
            log.error("wechat handler overran %.1fs for %s; default reply sent", self.timeout, key)
            return self._default(message), MessageStatus.TIMEOUT
        except Exception:
            log.exception("wechat handler failed for %s; default reply sent", key)
            return self._default(message), MessageStatus.ERROR

    def _call(self, handler: Handler, message: BaseMessage) -> str:
        with self.app.app_context():
            try:
                # Its answer is past use after the budget, but its writes are not; a statement stuck on a lock for
                # longer would hold one of the pool's threads, and eight of them every slow handler's message.
                with _bounded(POOLED_STATEMENTS):
                    reply = handler(message)
                return render_reply(reply, message)
            except Exception:
                db.session.rollback()  # drop the handler's half-done work
                raise

    def _default(self, message: BaseMessage) -> str:
        try:
            return render_reply(replies.default_reply(), message)
        except Exception:  # even the database is failing: answer, never 500
            log.exception("default reply unavailable")
            return EMPTY_REPLY

    def _claim(self, key: str, message: BaseMessage, handler: Handler | None, signature: str) -> bool | None:
        """True: ours to process; False: another copy is (or was) processed; None: Redis is down.

        In the same round trip: the keys the handler peeks at, attached to the message; and the URL signature bound
        to this delivery. It covers token, timestamp and nonce, not the body: a signed URL read from a proxy's access
        log would carry any message, from any openid, while its timestamp is fresh. Its retries (the same key) pass;
        another body is a ProtocolError (403). Redis down: not checked.
        """
        peek = getattr(handler, "peek", None)
        keys = list(peek(message)) if peek is not None else []
        signed = f"wx:sig:{signature.lower()}" if signature else None  # check_signature takes either case
        try:
            pipe = get_redis().pipeline(transaction=False)
            if signed:
                fresh = 2 * self.app.config["WECHAT_MAX_CLOCK_SKEW"]  # either side of its timestamp
                pipe.set(signed, key, nx=True, ex=fresh).get(signed)  # not SET NX GET: Redis 7 only
            pipe.set(f"wx:reply:{key}", PENDING, nx=True, ex=REPLY_TTL)
            if keys:
                pipe.mget(keys)
            answers = pipe.execute()
        except Exception:
            log.warning("redis unavailable; dedupe falls back to the database for %s", key)
            return None
        if signed:
            bound = answers[1]
            answers = answers[2:]
            if bound is not None and bound.decode() != key:
                if answers[0]:
                    self._release(key)  # claimed for the forged copy: not ours to keep
                raise ProtocolError(403, "signature already used for another message")
        if keys:
            message._peeked = dict(zip(keys, answers[1], strict=True))
        return bool(answers[0])

    def _release(self, key: str) -> None:
        try:
            get_redis().delete(f"wx:reply:{key}")
        except Exception:
            pass

    def _publish(self, key: str, reply: str) -> None:
        try:
            get_redis().set(f"wx:reply:{key}", reply.encode(), ex=REPLY_TTL)
        except Exception:
            log.warning("redis unavailable; reply for %s not shared", key)

    def _await_reply(self, key: str, deadline: float) -> str | None:
        """A retry (or a concurrent copy): wait for the first copy's reply and give the same one; or None when the
        first copy's process died before answering, and this copy has taken the message over.

        Slow handlers' replies are published in Redis; fast ones' are in the log row from the start.
        """
        pause = 0.005
        while time.monotonic() < deadline:
            try:
                value = get_redis().get(f"wx:reply:{key}")
            except Exception:
                break
            if value:
                return value.decode()
            if value is None:  # expired or lost: the database has the answer if anyone does
                break
            stored = inbound.stored_reply(key)
            db.session.rollback()  # a fresh snapshot for the next look
            if stored:
                return stored
            if self._take_over(key):
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return self._await_stored(key, deadline)

    def _take_over(self, key: str) -> bool:
        """Renew an abandoned claim as ours: once among all the retries waiting on it (the renewed one is young)."""
        abandoned_ms = int((REPLY_TTL - self.timeout - 1.0 - ABANDONED_AFTER) * 1000)  # TTL left when that old
        try:
            return bool(get_redis().eval(_TAKE_OVER, 1, f"wx:reply:{key}", abandoned_ms, REPLY_TTL))
        except Exception:
            return False

    def _await_stored(self, key: str, deadline: float) -> str:
        pause = 0.01
        while True:
            reply = inbound.stored_reply(key)
            db.session.rollback()  # a fresh snapshot for the next look
            if reply or time.monotonic() >= deadline:
                return reply or EMPTY_REPLY
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
