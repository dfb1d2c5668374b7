"""Auto-reply rules (filled in by the rules work)."""

from __future__ import annotations

from flask import render_template

from models import Role
from server.console import bp
from server.console.access import require_roles


@bp.get("/replies")
@require_roles(Role.ADMIN, Role.EDITOR)
def reply_list():  # type: ignore[no-untyped-def]
    return render_template("console/placeholder.html", title="自动回复")
