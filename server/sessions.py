"""Cookie sessions, left unopened on the paths machines call: WeChat's callback and the health checks.

Opening one costs a serializer and a cookie parse on every request; WeChat's POSTs carry no cookie, and on the
gateway's hot path that was ~5 % of its CPU.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

STATELESS_PATHS = frozenset({"/wechat", "/healthz", "/readyz"})


class SessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path in STATELESS_PATHS:
            return None  # Flask substitutes a NullSession: empty, never saved, and writing to it raises
        return super().open_session(app, request)
