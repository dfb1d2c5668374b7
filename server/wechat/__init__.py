"""The /wechat callback, the shared WeChat API client, and the local emulator of WeChat's API."""

from flask import Blueprint

bp = Blueprint("wechat", __name__)

from server.wechat import views  # noqa: E402,F401  (routes register on bp)
