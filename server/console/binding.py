"""Officer binding codes (filled in by the binding work)."""

from __future__ import annotations

from flask import render_template

from models import Role
from server.console import bp
from server.console.access import require_roles


@bp.get("/binding")
@require_roles(Role.ADMIN)
def binding_list():  # type: ignore[no-untyped-def]
    return render_template("console/placeholder.html", title="队员绑定")
