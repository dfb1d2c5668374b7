"""Log lines name the request they come from: an id per request (nginx's X-Request-ID when it sends one), in every
line logged while the request runs and in the answer's X-Request-ID header, so a citizen's complaint or a proxy's
log line leads to the app's lines."""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar

from flask import Flask, Response, request

from server.wechat.client import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
_INCOMING = re.compile(r"[A-Za-z0-9._-]{1,64}")  # what a proxy's id looks like; anything else is replaced
_request_id: ContextVar[str] = ContextVar("request_id", default="-")  # "-": no request (start-up, a worker thread)


class RequestIdFilter(logging.Filter):
    """Names the request; and a line that would print a WeChat credential (the demo server's access lines show the
    emulated WeChat's URLs, token and all) prints it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: let the handler report it as logging does, never raise here
            return True
        if "=" in message and (cleaned := redact(message)) != message:
            record.msg, record.args = cleaned, ()
        return True


def init_logging(app: Flask) -> None:
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())

    @app.before_request
    def tag_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        _request_id.set(incoming if _INCOMING.fullmatch(incoming) else secrets.token_hex(8))

    @app.after_request
    def name_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = _request_id.get()
        return response

    @app.teardown_request
    def forget_request(exc: BaseException | None) -> None:
        # A thread that also serves requests in-process (the demo's jobs post to /wechat) logs its own lines after.
        _request_id.set("-")
