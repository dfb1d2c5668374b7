"""Process each WeChat delivery exactly once and give every copy of it the same reply, within WeChat's 5 s."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Flask
from wechatpy.messages import BaseMessage

from handlers import router
from models import MessageStatus
from server.extensions import db, get_redis
from server.services import inbound, replies
from server.wechat.protocol import EMPTY_REPLY, render_reply

log = logging.getLogger(__name__)

REPLY_TTL = 120  # WeChat retries 3 times over about 15 s; later copies still meet the database's unique key
PENDING = b""
_DUPLICATE = object()


class Gateway:
    """Claims a delivery in Redis, runs its handler under a time budget, and publishes the reply for retries."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.timeout = app.config["WECHAT_HANDLER_TIMEOUT"]
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        # Created per process: a pool made before gunicorn forks has no threads in the child.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="wechat-handler")
                    self._pid = os.getpid()
        assert self._executor is not None
        return self._executor

    def handle(self, data: dict[str, Any], key: str) -> str:
        """The plaintext reply (XML or "success") for this delivery."""
        deadline = time.monotonic() + self.timeout + 1.0
        message = router.parse(data)
        if self._claim(key) is False:
            return self._await_reply(key, deadline)
        late = threading.Event()
        future = self._pool().submit(self._process, data, key, message, late)
        try:
            reply = future.result(timeout=self.timeout)
        except FutureTimeout:
            late.set()
            log.error("wechat handler overran %.1fs for %s; default reply sent", self.timeout, key)
            reply = self._default(message)
        if reply is _DUPLICATE:  # Redis had lost the claim; the database's unique key caught the copy
            reply = self._await_stored(key, deadline)
        self._publish(key, reply)
        return reply

    def _process(self, data: dict[str, Any], key: str, message: BaseMessage, late: threading.Event) -> Any:
        with self.app.app_context():
            try:
                row = inbound.record(data, key)
            except inbound.Duplicate:
                return _DUPLICATE
            try:
                reply, status = render_reply(router.dispatch(message), message), MessageStatus.OK
            except Exception:
                log.exception("wechat handler failed for %s; default reply sent", key)
                db.session.rollback()  # drop the handler's half-done work, then log the message afresh
                try:
                    row = inbound.record(data, key)
                except inbound.Duplicate:
                    return _DUPLICATE
                reply, status = self._default(message), MessageStatus.ERROR
            if late.is_set():  # the user already got the default reply; log what they saw
                reply, status = self._default(message), MessageStatus.TIMEOUT
            inbound.finish(row, reply, status)
            return reply

    def _default(self, message: BaseMessage) -> str:
        try:
            return render_reply(replies.default_reply(), message)
        except Exception:  # even the database is failing: answer, never 500
            log.exception("default reply unavailable")
            return EMPTY_REPLY

    def _claim(self, key: str) -> bool | None:
        """True: ours to process; False: another copy is (or was) processed; None: Redis is down."""
        try:
            return bool(get_redis().set(f"wx:reply:{key}", PENDING, nx=True, ex=REPLY_TTL))
        except Exception:
            log.warning("redis unavailable; dedupe falls back to the database for %s", key)
            return None

    def _publish(self, key: str, reply: str) -> None:
        try:
            get_redis().set(f"wx:reply:{key}", reply.encode(), ex=REPLY_TTL)
        except Exception:
            log.warning("redis unavailable; reply for %s not shared", key)

    def _await_reply(self, key: str, deadline: float) -> str:
        """A retry (or a concurrent copy): wait for the first copy's reply and give the same one."""
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
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return self._await_stored(key, deadline)

    def _await_stored(self, key: str, deadline: float) -> str:
        pause = 0.01
        while True:
            reply = inbound.stored_reply(key)
            db.session.rollback()  # a fresh snapshot for the next look
            if reply or time.monotonic() >= deadline:
                return reply or EMPTY_REPLY
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
