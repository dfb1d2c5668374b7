"""Absolute links for messages that leave the site (template messages, Open311 documents), also from Celery tasks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_request_context, url_for


def public_url(endpoint: str, **values: Any) -> str | None:
    """The link citizens and staff open from WeChat: PUBLIC_BASE_URL when set (the console may be reached under an
    intranet host, and beat jobs have no request), else the current request's host; None when neither is known."""
    base = current_app.config.get("PUBLIC_BASE_URL") or ""
    if base:
        parts = urlsplit(base)
        adapter = current_app.url_map.bind(
            parts.netloc, script_name=parts.path.rstrip("/") or "/", url_scheme=parts.scheme
        )
        return adapter.build(endpoint, values, force_external=True)
    if has_request_context():
        return url_for(endpoint, _external=True, **values)
    return None
