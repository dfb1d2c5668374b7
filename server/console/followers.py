"""Followers (filled in by the followers work)."""

from __future__ import annotations

from flask import render_template

from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles


@bp.get("/followers")
@require_roles(*CONSOLE_ROLES)
def follower_list():  # type: ignore[no-untyped-def]
    return render_template("console/placeholder.html", title="粉丝")
