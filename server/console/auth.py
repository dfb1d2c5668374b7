"""Log in, change password, log out (here or everywhere)."""

from __future__ import annotations

import logging
import secrets
import time

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from redis import RedisError

from models import Role
from server.console import bp
from server.extensions import get_redis
from server.redirects import local_path
from server.services import ServiceError
from server.services import staff as staff_service

log = logging.getLogger(__name__)
SIGNED_IN_AT, SESSION_ID = "staff_since", "staff_sid"


def _safe_next(target: str | None) -> str:
    return local_path(target, url_for("console.home"))


def _lifetime() -> int:
    return current_app.config["STAFF_SESSION_HOURS"] * 3600


def _ended_key(sid: str) -> str:
    return f"staff:session-ended:{sid}"


def session_ended() -> str | None:
    """Why this signed-in session may no longer be used, or None. The cookie is signed, not stored: a copy of it
    (a shared computer, a proxy) would otherwise work until the password changed."""
    since, sid = session.get(SIGNED_IN_AT), session.get(SESSION_ID)
    if not isinstance(since, int) or not isinstance(sid, str) or time.time() - since > _lifetime():
        return f"登录已超过 {current_app.config['STAFF_SESSION_HOURS']} 小时，请重新登录"
    try:
        if get_redis().exists(_ended_key(sid)):
            return "已退出登录，请重新登录"
    except RedisError:
        log.warning("redis unavailable; ended sessions not checked")
    return None


def _end_session() -> None:
    """Logout ends this session wherever its cookie went, for as long as the cookie could still be valid."""
    sid, since = session.get(SESSION_ID), session.get(SIGNED_IN_AT)
    if isinstance(sid, str) and isinstance(since, int):
        left = int(since + _lifetime() - time.time())
        try:
            if left > 0:
                get_redis().set(_ended_key(sid), 1, ex=left)
        except RedisError:
            log.warning("redis unavailable; the ended session's cookie stays valid until it expires")
    logout_user()
    session.pop(SIGNED_IN_AT, None)
    session.pop(SESSION_ID, None)


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if current_user.is_authenticated:
        return redirect(url_for("console.home"))
    error = None
    if request.method == "POST":
        try:
            user = staff_service.authenticate(
                request.form.get("username", ""), request.form.get("password", ""), request.remote_addr
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            # A new session (session fixation): nothing from before sign-in carries over, its form-token secret above
            # all, which whoever planted the cookie would know.
            session.clear()
            login_user(user)
            session[SIGNED_IN_AT], session[SESSION_ID] = int(time.time()), secrets.token_urlsafe(12)
            if user.role is Role.OFFICER:
                return redirect(url_for("console.password_change" if user.must_change_password else "console.home"))
            return redirect(_safe_next(request.args.get("next")))
    return render_template("console/login.html", error=error, username=request.form.get("username", "")), (
        400 if error else 200
    )


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password_change():  # type: ignore[no-untyped-def]
    error = None
    if request.method == "POST":
        new, confirm = request.form.get("new_password", ""), request.form.get("confirm_password", "")
        try:
            if new != confirm:
                raise ServiceError("两次输入的新密码不一致")
            staff_service.change_password(
                current_user._get_current_object(), request.form.get("old_password", ""), new, request.remote_addr
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            login_user(current_user._get_current_object())  # the session version moved: a new cookie
            flash("密码已修改，其他设备上的登录已退出", "success")
            return redirect(_safe_next(request.args.get("next")))
    return render_template("console/password.html", error=error), 400 if error else 200


@bp.post("/logout")
@login_required
def logout():  # type: ignore[no-untyped-def]
    _end_session()
    flash("已退出登录", "success")
    return redirect(url_for("console.login"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere():  # type: ignore[no-untyped-def]
    staff_service.logout_everywhere(current_user._get_current_object())
    _end_session()
    flash("已在所有设备上退出登录", "success")
    return redirect(url_for("console.login"))
