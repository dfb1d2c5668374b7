"""Staff WeChat binding (admins only): issue a one-time code and QR, watch its status, revoke, unbind, resync the
officers' tag."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from models import BindingCode, Role, Staff
from server.console import bp
from server.console.access import require_roles
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError
from server.services import binding as binding_service

STATUSES = ("outstanding", "used", "expired")


def _list_page(error: str | None = None, status_code: int = 200):  # type: ignore[no-untyped-def]
    status = request.args.get("status", "")
    status = status if status in STATUSES else ""
    bound = binding_service.bound_staff()
    return render_template(
        "console/binding_list.html",
        codes=binding_service.list_codes(status or None),
        status=status,
        statuses=binding_service.STATUS_LABELS,
        status_of=binding_service.status_of,
        groups=binding_service.bindable_staff(),
        receives=binding_service.receives,
        wants_tag=binding_service.wants_tag,
        bound=bound,
        tagged=binding_service.tagged_openids() if bound else set(),
        form=request.form,
        selected=request.form.get("staff_id") or request.args.get("staff_id", ""),
        hours=(binding_service.DEFAULT_HOURS, binding_service.MIN_HOURS, binding_service.MAX_HOURS),
        error=error,
    ), status_code


@bp.get("/binding")
@require_roles(Role.ADMIN)
def binding_list():  # type: ignore[no-untyped-def]
    return _list_page()


@bp.post("/binding")
@require_roles(Role.ADMIN)
def binding_create():  # type: ignore[no-untyped-def]
    staff_id = to_int(request.form.get("staff_id"), lo=1)
    raw_hours = request.form.get("hours") or ""
    hours = to_int(raw_hours) if raw_hours.strip() else binding_service.DEFAULT_HOURS
    if staff_id is None or hours is None:
        return _list_page("请选择人员并填写有效期（小时）", 400)
    try:
        row = binding_service.issue(staff_id, hours=hours, created_by_id=current_user.id)
    except ServiceError as exc:
        return _list_page(str(exc), 400)
    if row.qr_ticket is None:
        flash("绑定码已生成，但微信二维码生成失败：可先让队员发送绑定码，或稍后点「重新生成二维码」。", "error")
    return redirect(url_for("console.binding_detail", binding_id=row.id))


@bp.get("/binding/<int:binding_id>")
@require_roles(Role.ADMIN)
def binding_detail(binding_id: int):  # type: ignore[no-untyped-def]
    row = db.session.get(BindingCode, binding_id) or abort(404)
    return render_template(
        "console/binding_detail.html",
        row=row,
        status=binding_service.status_of(row),
        statuses=binding_service.STATUS_LABELS,
    )


@bp.get("/binding/<int:binding_id>/qr.png")
@require_roles(Role.ADMIN)
def binding_qr(binding_id: int):  # type: ignore[no-untyped-def]
    """The QR image, fetched by us: the browser never talks to WeChat, and a spent code has no image."""
    row = db.session.get(BindingCode, binding_id) or abort(404)
    image = binding_service.qr_image(row)
    if image is None:
        abort(404)
    body, mimetype = image
    # A live credential: not to be kept by the browser or any proxy.
    return Response(body, mimetype=mimetype, headers={"Cache-Control": "no-store, private"})


@bp.post("/binding/<int:binding_id>/qr")
@require_roles(Role.ADMIN)
def binding_qr_renew(binding_id: int):  # type: ignore[no-untyped-def]
    row = db.session.get(BindingCode, binding_id) or abort(404)
    try:
        ok = binding_service.request_qr(row)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash("二维码已重新生成" if ok else "微信二维码生成失败，请稍后再试", "success" if ok else "error")
    return redirect(url_for("console.binding_detail", binding_id=row.id))


@bp.post("/binding/<int:binding_id>/revoke")
@require_roles(Role.ADMIN)
def binding_revoke(binding_id: int):  # type: ignore[no-untyped-def]
    db.session.get(BindingCode, binding_id) or abort(404)
    try:
        row = binding_service.revoke(binding_id)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已撤销 {row.staff.name} 的绑定码", "success")
    if request.form.get("back") == "detail":  # a fixed choice, not a URL: no open redirect
        return redirect(url_for("console.binding_detail", binding_id=binding_id))
    return redirect(url_for("console.binding_list"))


@bp.post("/binding/staff/<int:staff_id>/unbind")
@require_roles(Role.ADMIN)
def binding_unbind(staff_id: int):  # type: ignore[no-untyped-def]
    db.session.get(Staff, staff_id) or abort(404)
    try:
        person = binding_service.unbind(staff_id)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已解除 {person.name} 的微信绑定", "success")
    return redirect(url_for("console.binding_list"))


@bp.post("/binding/staff/<int:staff_id>/tag")
@require_roles(Role.ADMIN)
def binding_tag_sync(staff_id: int):  # type: ignore[no-untyped-def]
    db.session.get(Staff, staff_id) or abort(404)
    try:
        queued = binding_service.retry_tag(staff_id)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash("已提交标签同步" if queued else "标签同步失败，请稍后再试", "success" if queued else "error")
    return redirect(url_for("console.binding_list"))
