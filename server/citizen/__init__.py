"""/m: citizens' H5 pages, opened from the menu inside WeChat. WeChat OAuth (snsapi_base) tells us the openid."""

from __future__ import annotations

from flask import Blueprint, request

bp = Blueprint("citizen", __name__)


def wants_json() -> bool:
    """The page's own script is asking: answers and refusals as JSON, shown in place without leaving the page."""
    return request.accept_mimetypes.best == "application/json" or request.headers.get("X-Requested-With") == "fetch"


from server.citizen import contacts, events, home, identity, tips, upload, votes  # noqa: E402,F401  (views register on bp)
