"""Staff accounts and the unit tree with its AB posts (admins only)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from models import Role, Staff, Unit, UnitKind
from server.console import bp
from server.console.access import require_roles
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError
from server.services import staff as staff_service


@bp.get("/staff")
@require_roles(Role.ADMIN)
def staff_list():  # type: ignore[no-untyped-def]
    q = request.args.get("q", "").strip()
    query = sa.select(Staff).options(selectinload(Staff.unit)).order_by(Staff.unit_id, Staff.role, Staff.id)
    if q:
        query = query.where(sa.or_(Staff.name.contains(q), Staff.username.contains(q.lower())))
    people = db.session.scalars(query).all()
    phones = {s.id: staff_service.staff_phone(s) for s in people}
    locked = staff_service.locked([s.username for s in people])
    return render_template("console/staff_list.html", people=people, phones=phones, q=q, locked=locked)


@bp.post("/staff/<int:staff_id>/unlock")
@require_roles(Role.ADMIN)
def staff_unlock(staff_id: int):  # type: ignore[no-untyped-def]
    person = db.session.get(Staff, staff_id) or abort(404)
    try:
        staff_service.unlock(person)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已解除 {person.name} 的登录锁定", "success")
    return redirect(url_for("console.staff_list"))


@bp.post("/staff/<int:staff_id>/phone")
@require_roles(Role.ADMIN)
def staff_phone_reveal(staff_id: int):  # type: ignore[no-untyped-def]
    person = db.session.get(Staff, staff_id) or abort(404)
    return {"phone": staff_service.staff_phone(person, reveal=True)}


@bp.route("/staff/new", methods=["GET", "POST"], defaults={"staff_id": None})
@bp.route("/staff/<int:staff_id>", methods=["GET", "POST"])
@require_roles(Role.ADMIN)
def staff_edit(staff_id: int | None):  # type: ignore[no-untyped-def]
    person = (db.session.get(Staff, staff_id) or abort(404)) if staff_id else None
    error = None
    if request.method == "POST":
        form = request.form
        try:
            person = staff_service.save_staff(
                username=form.get("username", ""),
                name=form.get("name", ""),
                role=form.get("role", ""),
                unit_id=to_int(form.get("unit_id")),
                phone=form.get("phone"),
                password=form.get("password") or None,
                active=form.get("active") == "on",
                away=form.get("away") == "on",
                staff=person,
                by=current_user,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{person.name}", "success")
            return redirect(url_for("console.staff_list"))
    return render_template(
        "console/staff_form.html",
        person=person,
        error=error,
        roles=list(Role),
        units=staff_service.units_tree(),
        form=request.form,
    ), 400 if error else 200


@bp.get("/units")
@require_roles(Role.ADMIN)
def unit_list():  # type: ignore[no-untyped-def]
    return render_template("console/units.html", tree=staff_service.units_tree(with_posts=True))


@bp.route("/units/new", methods=["GET", "POST"], defaults={"unit_id": None})
@bp.route("/units/<int:unit_id>", methods=["GET", "POST"])
@require_roles(Role.ADMIN)
def unit_edit(unit_id: int | None):  # type: ignore[no-untyped-def]
    unit = (db.session.get(Unit, unit_id) or abort(404)) if unit_id else None
    error = None
    if request.method == "POST":
        form = request.form
        try:
            unit = staff_service.save_unit(
                name=form.get("name", ""),
                kind=form.get("kind", ""),
                parent_id=to_int(form.get("parent_id")),
                sort=to_int(form.get("sort"), 0),
                post_a_id=to_int(form.get("post_a_id")),
                post_b_id=to_int(form.get("post_b_id")),
                unit=unit,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{unit.name}", "success")
            return redirect(url_for("console.unit_list"))
    people = db.session.scalars(sa.select(Staff).where(Staff.active).order_by(Staff.name)).all()
    return render_template(
        "console/unit_form.html",
        unit=unit,
        error=error,
        kinds=list(UnitKind),
        units=staff_service.units_tree(),
        people=people,
        form=request.form,
    ), 400 if error else 200
