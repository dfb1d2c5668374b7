"""Open311 API keys (admins only): issue a key to a partner system (shown once), list, revoke."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import current_user

from models import Role
from server.console import bp
from server.console.access import require_roles
from server.services import ServiceError
from server.services import open311 as open311_service


def _page(*, error: str | None = None, issued: tuple[str, str] | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    response = render_template(
        "console/open311_keys.html",
        keys=open311_service.keys(),
        form=request.form,
        error=error,
        issued=issued,
        discovery_url=url_for("open311.discovery_get", fmt="json", _external=True),
    )
    # The page that shows a new key must not sit in a cache or the browser's history.
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/open311/keys")
@require_roles(Role.ADMIN)
def open311_key_list():  # type: ignore[no-untyped-def]
    return _page()


@bp.post("/open311/keys")
@require_roles(Role.ADMIN)
def open311_key_create():  # type: ignore[no-untyped-def]
    try:
        row, plain = open311_service.issue_key(
            request.form.get("name", ""), request.form.get("organisation", ""), by=current_user
        )
    except ServiceError as exc:
        return _page(error=str(exc), status=400)
    return _page(issued=(row.name, plain))  # rendered, not redirected: the key exists only in this response


@bp.post("/open311/keys/<int:key_id>/revoke")
@require_roles(Role.ADMIN)
def open311_key_revoke(key_id: int):  # type: ignore[no-untyped-def]
    try:
        open311_service.revoke_key(key_id)
    except ServiceError as exc:
        return _page(error=str(exc), status=404)
    return redirect(url_for("console.open311_key_list"))
