"""Urgent-opinion alerts (舆情): the list (polled for new ones), acknowledgement, and the terms/duty/settings page."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from models import Alert, AlertStatus, Role, SensitiveTerm, utcnow
from server.console import bp
from server.console.access import require_roles
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, alerts

VIEW_ROLES = alerts.ALERT_ROLES  # liaisons and officers: 403
EDIT_ROLES = (Role.ADMIN, Role.EDITOR)
POLL_SECONDS = 10
PAGE = 200


def _alert_or_404(alert_id: int) -> Alert:
    return db.session.get(Alert, alert_id) or abort(404)


def _int(value: str | None, label: str) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        raise ServiceError(f"{label}须为整数") from None


@bp.get("/alerts")
@require_roles(*VIEW_ROLES)
def alert_list():  # type: ignore[no-untyped-def]
    status = request.args.get("status", "")
    if status not in ("", *(s.value for s in AlertStatus)):
        status = ""
    conf = alerts.settings()
    before = to_int(request.args.get("before"), None, lo=1)
    items = alerts.list_alerts(status or None, before_id=before, limit=PAGE + 1)  # one more: is there an older page?
    more, items = len(items) > PAGE, items[:PAGE]
    now = utcnow()
    counts = alerts.feed(2**31 - 1)  # no alerts newer than that: just the counts and the latest id
    return render_template(
        "console/alert_list.html",
        alerts=items,
        status=status,
        statuses=list(AlertStatus),
        sla_minutes=conf["sla_minutes"],
        deadlines={a.id: alerts.deadline(a, conf["sla_minutes"]) for a in items},
        overdue={a.id for a in items if alerts.is_overdue(a, conf["sla_minutes"], now)},
        now=now,
        counts=counts,
        poll_seconds=POLL_SECONDS,
        template_missing=not conf["template_id"],
        next_before=items[-1].id if more else None,
        paged=before is not None,
    )


@bp.get("/alerts/feed")
@require_roles(*VIEW_ROLES)
def alert_feed():  # type: ignore[no-untyped-def]
    """Polled by the list page: alerts newer than ?after=, and the open/overdue counts."""
    return alerts.feed(to_int(request.args.get("after"), 0, lo=0))


@bp.get("/alerts/<int:alert_id>")
@require_roles(*VIEW_ROLES)
def alert_detail(alert_id: int):  # type: ignore[no-untyped-def]
    alert = _alert_or_404(alert_id)
    conf = alerts.settings()
    return render_template(
        "console/alert_detail.html",
        alert=alert,
        deadline=alerts.deadline(alert, conf["sla_minutes"]),
        overdue=alerts.is_overdue(alert, conf["sla_minutes"]),
        sla_minutes=conf["sla_minutes"],
    )


@bp.post("/alerts/<int:alert_id>/ack")
@require_roles(*VIEW_ROLES)
def alert_ack(alert_id: int):  # type: ignore[no-untyped-def]
    _alert_or_404(alert_id)
    try:
        alert = alerts.acknowledge(alert_id, request.form.get("note", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已确认舆情 A{alert.id}（{alert.acknowledged_by_name or '—'}）", "success")
    if request.form.get("next") == "list":
        return redirect(url_for("console.alert_list"))
    return redirect(url_for("console.alert_detail", alert_id=alert_id))


@bp.post("/alerts/<int:alert_id>/close")
@require_roles(*VIEW_ROLES)
def alert_close(alert_id: int):  # type: ignore[no-untyped-def]
    _alert_or_404(alert_id)
    try:
        alert = alerts.close(alert_id, request.form.get("note", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"舆情 A{alert.id} 已办结", "success")
    return redirect(url_for("console.alert_detail", alert_id=alert_id))


def _terms_page(status: int = 200, **context: Any):  # type: ignore[no-untyped-def]
    test_text = request.args.get("text", "")[:2048]
    duty_ids = {s.id for s in alerts.duty_staff()}
    context.setdefault("settings", alerts.settings())
    context.setdefault("error", None)
    context.setdefault("settings_error", None)
    context.setdefault("term_form", {"term": "", "weight": "3"})
    return render_template(
        "console/alert_terms.html",
        terms=alerts.list_terms(),
        test_text=test_text,
        explanation=alerts.explain(test_text) if test_text.strip() else None,
        candidates=alerts.duty_candidates(),
        duty_ids=duty_ids,
        **context,
    ), status


@bp.get("/alerts/terms")
@require_roles(*EDIT_ROLES)
def alert_terms():  # type: ignore[no-untyped-def]
    return _terms_page()


@bp.post("/alerts/terms")
@require_roles(*EDIT_ROLES)
def alert_term_create():  # type: ignore[no-untyped-def]
    form = request.form
    try:
        term = alerts.save_term(term=form.get("term", ""), weight=_int(form.get("weight"), "权重"), enabled=True)
    except ServiceError as exc:
        return _terms_page(400, error=str(exc), term_form=form)
    flash(f"已新增敏感词「{term.term}」，新消息马上按新词表匹配", "success")
    return redirect(url_for("console.alert_terms"))


@bp.post("/alerts/terms/<int:term_id>")
@require_roles(*EDIT_ROLES)
def alert_term_update(term_id: int):  # type: ignore[no-untyped-def]
    item = db.session.get(SensitiveTerm, term_id) or abort(404)
    form = request.form
    try:
        alerts.save_term(
            term=item.term, weight=_int(form.get("weight"), "权重"), enabled=form.get("enabled") == "1", existing=item
        )
    except ServiceError as exc:
        return _terms_page(400, error=str(exc))
    flash(f"已保存敏感词「{item.term}」", "success")
    return redirect(url_for("console.alert_terms"))


@bp.post("/alerts/terms/<int:term_id>/delete")
@require_roles(*EDIT_ROLES)
def alert_term_delete(term_id: int):  # type: ignore[no-untyped-def]
    item = db.session.get(SensitiveTerm, term_id) or abort(404)
    term = item.term
    alerts.delete_term(item)
    flash(f"已删除敏感词「{term}」", "success")
    return redirect(url_for("console.alert_terms"))


@bp.post("/alerts/settings")
@require_roles(*EDIT_ROLES)
def alert_settings():  # type: ignore[no-untyped-def]
    form = request.form
    try:
        alerts.save_settings(
            threshold=_int(form.get("threshold"), "预警阈值"),
            sla_minutes=_int(form.get("sla_minutes"), "确认时限"),
            template_id=form.get("template_id", ""),
        )
    except ServiceError as exc:
        return _terms_page(400, settings_error=str(exc), settings=form)
    flash("已保存舆情设置", "success")
    return redirect(url_for("console.alert_terms"))


@bp.post("/alerts/duty")
@require_roles(*EDIT_ROLES)
def alert_duty():  # type: ignore[no-untyped-def]
    try:
        ids = [int(v) for v in request.form.getlist("staff_id")]
        alerts.set_duty(ids)
    except ValueError:
        return _terms_page(400, settings_error="值班人员选择有误")
    except ServiceError as exc:
        return _terms_page(400, settings_error=str(exc))
    flash("已保存值班名单", "success")
    return redirect(url_for("console.alert_terms") + "#duty")
