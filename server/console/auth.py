"""Log in, change password, log out (here or everywhere)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from models import Role
from server.console import bp
from server.redirects import local_path
from server.services import ServiceError
from server.services import staff as staff_service


def _safe_next(target: str | None) -> str:
    return local_path(target, url_for("console.home"))


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
    logout_user()
    flash("已退出登录", "success")
    return redirect(url_for("console.login"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere():  # type: ignore[no-untyped-def]
    staff_service.logout_everywhere(current_user._get_current_object())
    logout_user()
    flash("已在所有设备上退出登录", "success")
    return redirect(url_for("console.login"))
