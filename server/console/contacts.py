"""Community contact points (社区联络点): list and edit; published at /m/contacts and answered in chat."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from models import ContactPoint, Role
from server.console import bp
from server.console.access import require_roles
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, contacts
from server.services import staff as staff_service

EDIT_ROLES = (Role.ADMIN, Role.EDITOR)


@bp.get("/contacts")
@require_roles(*EDIT_ROLES)
def contact_list():  # type: ignore[no-untyped-def]
    return render_template("console/contact_list.html", points=contacts.list_points())


@bp.route("/contacts/new", methods=["GET", "POST"], defaults={"point_id": None})
@bp.route("/contacts/<int:point_id>", methods=["GET", "POST"])
@require_roles(*EDIT_ROLES)
def contact_edit(point_id: int | None):  # type: ignore[no-untyped-def]
    point = (db.session.get(ContactPoint, point_id) or abort(404)) if point_id else None
    error = None
    if request.method == "POST":
        form = request.form
        try:
            point = contacts.save_point(
                name=form.get("name", ""),
                address=form.get("address", ""),
                latitude=form.get("latitude"),
                longitude=form.get("longitude"),
                hours=form.get("hours", ""),
                phone=form.get("phone", ""),
                unit_id=to_int(form.get("unit_id")),
                published=form.get("published") == "on",
                point=point,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{point.name}", "success")
            return redirect(url_for("console.contact_list"))
    return render_template(
        "console/contact_form.html",
        point=point,
        form=request.form,
        error=error,
        units=staff_service.units_tree(),
    ), 400 if error else 200


@bp.post("/contacts/<int:point_id>/delete")
@require_roles(*EDIT_ROLES)
def contact_delete(point_id: int):  # type: ignore[no-untyped-def]
    point = db.session.get(ContactPoint, point_id) or abort(404)
    name = point.name
    contacts.delete_point(point)
    flash(f"已删除：{name}", "success")
    return redirect(url_for("console.contact_list"))
