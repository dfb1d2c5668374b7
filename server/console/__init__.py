"""/admin: the editors' console. Every view checks the role (and the unit, for liaisons)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user, login_url, logout_user

from server.extensions import login
from server.services import audit, staff

bp = Blueprint("console", __name__)

# Reachable before the forced password change (and by officers, who have no console of their own).
OPEN_ENDPOINTS = {"console.login", "console.logout", "console.password_change", "console.logout_everywhere"}


@bp.app_context_processor
def _menu_helpers() -> dict[str, object]:
    from server.console.access import may_open
    from server.console.once import submit_key_field

    return {"may_open": may_open, "submit_key": submit_key_field}


@login.user_loader
def _load_user(user_id: str):  # type: ignore[no-untyped-def]
    return staff.load_session_user(user_id)


@bp.before_request
def _gate():  # type: ignore[no-untyped-def]
    if request.endpoint == "console.login":
        return None
    if not current_user.is_authenticated:
        return login.unauthorized()
    from server.console.auth import session_ended

    if (why := session_ended()) is not None:
        logout_user()
        flash(why, "warning")  # instead of the generic 请先登录
        return redirect(login_url("console.login", request.url))
    request.environ["audit.token"] = audit.set_actor(
        audit.Actor(current_user.id, current_user.name, request.remote_addr)
    )
    if current_user.must_change_password and request.endpoint not in OPEN_ENDPOINTS:
        return redirect(url_for("console.password_change", next=request.full_path.rstrip("?")))
    return None


@bp.teardown_request
def _forget_actor(exc: BaseException | None) -> None:
    token = request.environ.pop("audit.token", None)
    if token is not None:
        audit.reset_actor(token)


from server.console import (  # noqa: E402,F401  (views register on bp)
    alerts,
    articles,
    audit_log,
    auth,
    binding,
    channels,
    contacts,
    events,
    followers,
    home,
    materials,
    menus,
    open311_keys,
    replies,
    staff_views,
    stats,
    tips,
    votes,
)
