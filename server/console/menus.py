"""The custom menu editor (filled in by the menu work)."""

from __future__ import annotations

from flask import render_template

from models import Role
from server.console import bp
from server.console.access import require_roles


@bp.get("/menu")
@require_roles(Role.ADMIN, Role.EDITOR)
def menu_edit():  # type: ignore[no-untyped-def]
    return render_template("console/placeholder.html", title="自定义菜单")
