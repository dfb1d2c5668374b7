"""/m: citizens' H5 pages, opened from the menu inside WeChat. WeChat OAuth (snsapi_base) tells us the openid."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("citizen", __name__)

from server.citizen import contacts, events, home, identity, tips, upload, votes  # noqa: E402,F401  (views register on bp)
