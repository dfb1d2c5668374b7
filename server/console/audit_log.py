"""The audit log, read-only."""

from __future__ import annotations

import sqlalchemy as sa
from flask import render_template, request

from models import AuditKind, AuditLog, Role
from server.console import bp
from server.console.access import require_roles
from server.extensions import db
from server.inputs import to_int
from server.services import audit

PAGE = 50


@bp.get("/audit")
@require_roles(Role.ADMIN, Role.REVIEWER)
def audit_list():  # type: ignore[no-untyped-def]
    kind = request.args.get("kind", "")
    action = request.args.get("action", "").strip()
    before_id = to_int(request.args.get("before"), lo=1)  # type=int would pass 10**30 on to the database
    query = sa.select(AuditLog).order_by(AuditLog.id.desc()).limit(PAGE + 1)
    if kind in {k.value for k in AuditKind}:
        query = query.where(AuditLog.kind == AuditKind(kind))
    if action:  # an action code, its Chinese name, a person or a note
        like = f"%{action}%"
        query = query.where(
            sa.or_(
                AuditLog.action.startswith(action),
                AuditLog.action.in_(audit.actions_labelled(action)),
                AuditLog.staff_name.ilike(like),
                AuditLog.note.ilike(like),
            )
        )
    if before_id:
        query = query.where(AuditLog.id < before_id)  # keyset paging: the log only grows
    rows = db.session.scalars(query).all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render_template(
        "console/audit_list.html",
        rows=rows,
        kinds=list(AuditKind),
        kind=kind,
        action=action,
        next_before=rows[-1].id if more else None,
        action_label=audit.action_label,
        readable=audit.readable,
    )
