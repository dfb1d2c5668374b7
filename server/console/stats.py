"""/admin/stats: the leaders' dashboard, the annual plan, manual records, the unit scoreboard, reports, sync."""

from __future__ import annotations

import secrets
from datetime import date, timedelta

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from models import PlanProject, PublicityRecord, RecordKind, Role, StatReport
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles, require_unit, visible_unit_ids
from server.console.charts import bar_chart, line_chart
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, channels, datacube, reports, targets
from server.services import staff as staff_service
from server.tasks import stats as stats_tasks

PLAN_ROLES = (Role.ADMIN, Role.EDITOR)
RECORD_ROLES = (Role.ADMIN, Role.EDITOR, Role.LIAISON)
REPORT_ROLES = (Role.ADMIN, Role.EDITOR, Role.REVIEWER)


def _year() -> int:
    return to_int(request.values.get("year"), datacube.beijing_today().year, lo=2015, hi=2100)


def _as_of(year: int) -> date:
    yesterday = datacube.beijing_today() - timedelta(days=1)
    return min(yesterday, date(year, 12, 31))


def _bucket_label(day: date, grain: str) -> str:
    return {"day": f"{day:%m-%d}", "week": f"{day:%m-%d}周", "month": f"{day.month}月"}[grain]


def charts_for(rows: list[dict], grain: str) -> dict[str, object]:
    """The dashboard's and the printable report's SVG charts from one series."""
    labels = [_bucket_label(r["bucket"], grain) for r in rows]
    return {
        # Side by side: a narrower drawing, so its text is not scaled down to nothing.
        "followers": line_chart(
            list(zip(labels, [r["followers"] for r in rows], strict=True)), width=480, title="粉丝总数"
        ),
        "net": bar_chart(list(zip(labels, [r["net"] for r in rows], strict=True)), width=480, title="净增粉丝"),
        "reads": bar_chart(list(zip(labels, [r["reads"] for r in rows], strict=True)), title="阅读人数"),
    }


@bp.get("/stats")
@require_roles(*CONSOLE_ROLES)
def stats_dashboard():  # type: ignore[no-untyped-def]
    year = _year()
    grain = request.args.get("grain", "week")
    grain = grain if grain in datacube.GRAINS else "week"
    as_of = _as_of(year)
    through = min(datacube.beijing_today(), date(year, 12, 31))  # the office's own records count through today
    start = max(date(year, 1, 1), as_of - timedelta(days=59)) if grain == "day" else date(year, 1, 1)
    rows = datacube.series(start, as_of, grain)
    year_start = date(year, 1, 1)
    return render_template(
        "console/stats_dashboard.html",
        year=year,
        grain=grain,
        as_of=as_of,
        progress=targets.progress(year, through),
        frac=targets.year_fraction(year, through)[0],
        rows=rows,
        charts=charts_for(rows, grain),
        ten_w=datacube.top_articles(year_start, as_of, 50, min_reads=targets.TEN_W),
        top=datacube.top_articles(year_start, as_of, 10),
        sources=datacube.new_by_source(year_start, as_of),
        # Our own log counts through today, as the channel QR list does; WeChat's figures stop at yesterday
        scenes=datacube.own_events_by_scene(through - timedelta(days=29), through, limit=10),
        scene_names=channels.scene_names(),  # a channel QR's scene shows as the channel's name
        has_plan=targets.get_plan(year) is not None,
    )


# --- plan ---------------------------------------------------------------------------------------------------------


@bp.route("/stats/plan", methods=["GET", "POST"])
@require_roles(*CONSOLE_ROLES)
def stats_plan():  # type: ignore[no-untyped-def]
    year = _year()
    error = None
    if request.method == "POST":
        if current_user.role not in PLAN_ROLES:
            abort(403)
        try:
            targets.save_plan(year, {name: request.form.get(name, "") for name in targets.PLAN_FIELDS})
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存 {year} 年度目标", "success")
            return redirect(url_for("console.stats_plan", year=year))
    plan = targets.get_plan(year)
    base_followers, base_reads = targets.baselines(year, plan)
    return render_template(
        "console/stats_plan.html",
        year=year,
        plan=plan,
        fields=targets.PLAN_FIELDS,
        form=request.form if error else None,
        error=error,
        auto_baselines={"baseline_followers": base_followers, "baseline_reads": base_reads},
        units=staff_service.units_tree(),
        can_edit=current_user.role in PLAN_ROLES,
    ), 400 if error else 200


@bp.post("/stats/plan/projects")
@require_roles(*PLAN_ROLES)
def stats_project_save():  # type: ignore[no-untyped-def]
    year = _year()
    plan = targets.get_plan(year)
    if plan is None:
        flash("请先保存本年度目标，再添加宣传项目", "error")
        return redirect(url_for("console.stats_plan", year=year))
    form = request.form
    try:
        targets.save_project(
            plan,
            name=form.get("name", ""),
            months=form.get("months", ""),
            unit_id=to_int(request.values.get("unit_id"), lo=1),
            note=form.get("note", ""),
        )
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash("已添加宣传项目", "success")
    return redirect(url_for("console.stats_plan", year=year) + "#projects")


@bp.post("/stats/plan/projects/<int:project_id>/<action>")
@require_roles(*PLAN_ROLES)
def stats_project_action(project_id: int, action: str):  # type: ignore[no-untyped-def]
    project = db.session.get(PlanProject, project_id) or abort(404)
    year = project.plan.year
    if action == "delete":
        targets.delete_project(project)
    elif action in ("done", "reopen"):
        targets.set_project_done(project, action == "done")
    else:
        abort(404)
    return redirect(url_for("console.stats_plan", year=year) + "#projects")


# --- manual records -------------------------------------------------------------------------------------------------


@bp.route("/stats/records", methods=["GET", "POST"])
@require_roles(*CONSOLE_ROLES)
def stats_records():  # type: ignore[no-untyped-def]
    year = _year()
    kind = request.args.get("kind") or None
    kind = kind if kind in RecordKind._value2member_map_ else None
    error = None
    if request.method == "POST":
        if current_user.role not in RECORD_ROLES:
            abort(403)
        form = request.form
        unit_id = to_int(request.values.get("unit_id"), lo=1)
        if current_user.role is Role.LIAISON:
            unit_id = unit_id or current_user.unit_id
            require_unit(unit_id)  # liaisons record for their own unit (and those below it)
        try:
            record = targets.add_record(
                kind=form.get("kind", ""),
                title=form.get("title", ""),
                happened_on=form.get("happened_on", ""),
                outlet=form.get("outlet", ""),
                link=form.get("link", ""),
                unit_id=unit_id,
                note=form.get("note", ""),
                submit_key=form.get("submit_key", ""),
                created_by_id=current_user.id,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已登记：{record.title}", "success")
            return redirect(url_for("console.stats_records", year=record.happened_on.year, kind=kind))
    return render_template(
        "console/stats_records.html",
        year=year,
        kind=kind,
        kinds=list(RecordKind),
        listing=targets.list_records(year, kind, visible_unit_ids(), page=to_int(request.args.get("page"), 1, lo=1)),
        units=staff_service.units_tree(),
        form=request.form if error else {},
        error=error,
        submit_key=secrets.token_urlsafe(24),
        can_edit=current_user.role in RECORD_ROLES,
        today=datacube.beijing_today(),
    ), 400 if error else 200


@bp.post("/stats/records/<int:record_id>/delete")
@require_roles(*RECORD_ROLES)
def stats_record_delete(record_id: int):  # type: ignore[no-untyped-def]
    record = db.session.get(PublicityRecord, record_id) or abort(404)
    if current_user.role is Role.LIAISON:
        require_unit(record.unit_id)
    year = record.happened_on.year
    targets.delete_record(record)
    flash("已删除", "success")
    return redirect(url_for("console.stats_records", year=year))


# --- scoreboard -----------------------------------------------------------------------------------------------------


@bp.get("/stats/scoreboard")
@require_roles(*CONSOLE_ROLES)
def stats_scoreboard():  # type: ignore[no-untyped-def]
    year = _year()
    month = to_int(request.values.get("month"), lo=1, hi=12)
    rows = targets.scoreboard(year, month)
    top = [r for r in rows if r.depth == 0]  # a district's bar holds its squads': theirs would count twice
    # Not int(): scores are fractional (0.2 a photo), and a 0.8 drawn as 0 contradicted the table below.
    chart = bar_chart([(r.unit_name, max(r.score, 0)) for r in top[:20]], title="单位得分")
    return render_template(
        "console/stats_scoreboard.html",
        year=year,
        month=month,
        rows=rows,
        chart=chart,
        metrics=targets.METRICS,
        weights=targets.get_weights(),
        can_edit=current_user.role in PLAN_ROLES,
    )


@bp.post("/stats/weights")
@require_roles(*PLAN_ROLES)
def stats_weights():  # type: ignore[no-untyped-def]
    try:
        targets.save_weights({m: request.form[m] for m in targets.METRICS if m in request.form})
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash("已保存考核分值", "success")
    return redirect(url_for("console.stats_scoreboard", year=_year(), month=request.form.get("month") or None))


# --- reports --------------------------------------------------------------------------------------------------------


def _period_arg() -> tuple[str, date]:
    kind = request.values.get("kind", "monthly")
    text = request.values.get("period", "")
    try:
        if kind == "monthly":
            start = (
                date.fromisoformat(text + "-01") if len(text) == 7 else reports.previous_month(datacube.beijing_today())
            )
        elif kind == "yearly":
            start = date(to_int(text, datacube.beijing_today().year, lo=2015, hi=2100), 1, 1)
        else:
            abort(400)
    except ValueError:
        abort(400)
    if not date(2015, 1, 1) <= start <= date(2100, 12, 31):
        abort(400)
    return kind, start


@bp.get("/stats/reports")
@require_roles(*CONSOLE_ROLES)
def stats_reports():  # type: ignore[no-untyped-def]
    return render_template(
        "console/stats_reports.html",
        reports=reports.list_reports(),
        kinds=reports.KINDS,
        last_month=reports.previous_month(datacube.beijing_today()),
        can_generate=current_user.role in REPORT_ROLES,
    )


@bp.post("/stats/reports")
@require_roles(*REPORT_ROLES)
def stats_report_generate():  # type: ignore[no-untyped-def]
    kind, start = _period_arg()
    report = reports.generate(kind, start, by=current_user.name)
    flash(f"已生成：{reports.filename(report.kind, report.period_start)}", "success")
    return redirect(url_for("console.stats_reports"))


@bp.get("/stats/reports/<int:report_id>.xlsx")
@require_roles(*CONSOLE_ROLES)
def stats_report_download(report_id: int):  # type: ignore[no-untyped-def]
    report = db.session.get(StatReport, report_id) or abort(404)
    return _xlsx(report.content, reports.filename(report.kind, report.period_start))


def _xlsx(content: bytes, name: str) -> Response:
    from urllib.parse import quote

    return Response(
        content,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f"attachment; filename=report.xlsx; filename*=UTF-8''{quote(name)}"},
    )


@bp.get("/stats/reports/export")
@require_roles(*CONSOLE_ROLES)
def stats_report_export():  # type: ignore[no-untyped-def]
    """Build the workbook now, without storing it (what the bench measures)."""
    kind, start = _period_arg()
    return _xlsx(reports.workbook(reports.build(kind, start)), reports.filename(kind, start))


@bp.get("/stats/reports/print")
@require_roles(*CONSOLE_ROLES)
def stats_report_print():  # type: ignore[no-untyped-def]
    kind, start = _period_arg()
    data = reports.build(kind, start)
    grain = "day" if kind == "monthly" else "month"
    return render_template(
        "console/stats_report_print.html", data=data, charts=charts_for(data.daily, grain), metrics=targets.METRICS
    )


# --- sync -----------------------------------------------------------------------------------------------------------


@bp.route("/stats/sync", methods=["GET", "POST"])
@require_roles(Role.ADMIN)
def stats_sync():  # type: ignore[no-untyped-def]
    if request.method == "POST":
        try:
            start = date.fromisoformat(request.form.get("start", ""))
        except ValueError:
            flash("起始日期格式应为 2025-01-01", "error")
            return redirect(url_for("console.stats_sync"))
        start = max(start, datacube.EPOCH)
        for name in datacube.ENDPOINTS:
            stats_tasks.sync_datacube_endpoint.delay(name, start.isoformat())
        flash(f"已开始从 {start} 起同步微信统计数据", "success")
        return redirect(url_for("console.stats_sync"))
    return render_template("console/stats_sync.html", states=datacube.sync_states(), epoch=datacube.EPOCH)
