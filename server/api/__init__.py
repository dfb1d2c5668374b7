"""/open311/v2: Open311 GeoReport v2 for the 12345 hotline and civic apps (JSON and XML)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("open311", __name__)

from server.api import open311  # noqa: E402,F401  (views register on bp)
