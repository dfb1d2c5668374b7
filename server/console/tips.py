"""Tips in the console: the triage queue (filters, map, bulk dispatch, SLA, export), a tip's page with its actions,
photos behind role checks, categories, SLA hours and the blocked-citizens list.

Liaisons see only their unit's tips: another unit's tip is a 403, not a hidden link.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from models import Role, Tip, TipCategory, TipStatus, Unit, utcnow
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles, require_unit, visible_unit_ids
from server.extensions import db
from server.filters import LOCAL_TZ
from server.inputs import to_ids, to_int
from server.redirects import local_path
from server.services import ServiceError, images, tips
from server.services import staff as staff_service

EDITOR_ROLES = (Role.ADMIN, Role.EDITOR)
ORIGINAL_ROLES = (Role.ADMIN, Role.EDITOR, Role.REVIEWER)  # liaisons see the public copy only
PHONE_ROLES = (Role.ADMIN, Role.EDITOR)
MAP_W, MAP_H, MAP_PAD = 800, 480, 24
STATUS_COLOURS = {
    "submitted": "#2563eb",
    "accepted": "#7c3aed",
    "dispatched": "#d97706",
    "in_progress": "#ea580c",
    "resolved": "#16a34a",
    "rejected": "#6b7280",
    "duplicate": "#9ca3af",
}


def _me() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return to_int(raw, 1, lo=1)


def _tip_or_404(tip_id: int) -> Tip:
    tip = db.session.get(Tip, tip_id) or abort(404)
    require_unit(tip.unit_id)  # a liaison and another unit's tip: 403
    return tip


def _units() -> list[tuple[Unit, int]]:
    return staff_service.units_tree()


@bp.get("/tips")
@require_roles(*CONSOLE_ROLES)
def tip_list():  # type: ignore[no-untyped-def]
    f = tips.parse_filter(request.args)
    visible = visible_unit_ids()
    view = "map" if request.args.get("view") == "map" else "list"
    hours = tips.sla_hours()
    context: dict[str, Any] = {}
    if view == "map":
        context["map"] = _svg_map(tips.map_points(f, visible))
    else:
        context["result"] = tips.search(f, visible, _page_number())
    return render_template(
        "console/tip_list.html",
        f=f,
        query=f.as_dict(),
        view=view,
        statuses=list(TipStatus),
        categories=tips.category_names(active_only=False),
        units=_units(),
        hours=hours,
        now=utcnow(),
        due_at=tips.due_at,
        can_dispatch=current_user.role in EDITOR_ROLES,
        can_export=True,
        **context,
    )


@bp.post("/tips/dispatch")
@require_roles(*EDITOR_ROLES)
def tip_bulk_dispatch():  # type: ignore[no-untyped-def]
    ids = to_ids(request.form.getlist("tip_id"))
    back = _safe_back(request.form.get("back"))
    unit_id = to_int(request.form.get("unit_id"), lo=1)
    if not ids or unit_id is None:
        flash("请勾选线索并选择派发单位", "error")
        return redirect(back)
    done, problems = tips.bulk_dispatch(ids, unit_id, _me(), note=request.form.get("note"))
    if done:
        flash(f"已派发 {done} 条线索", "success")
        if warning := tips.unreachable_warning(unit_id):
            flash(warning, "warning")
    for problem in problems:
        flash(problem, "error")
    return redirect(back)


def _safe_back(value: str | None) -> str:
    return local_path(value, url_for("console.tip_list"), "/admin/tips")


@bp.get("/tips/export.xlsx")
@require_roles(*CONSOLE_ROLES)
def tip_export():  # type: ignore[no-untyped-def]
    f = tips.parse_filter(request.args)
    data = tips.export_xlsx(f, visible_unit_ids(), reveal_phone=current_user.role in PHONE_ROLES)
    filename = f"tips-{datetime.now(LOCAL_TZ):%Y%m%d-%H%M}.xlsx"
    return Response(
        data,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _detail(  # type: ignore[no-untyped-def]
    tip: Tip, *, error: str | None = None, phone: str | None = None, sent: Any = None, status: int = 200
):
    """`sent`: the action form that was refused, shown again as typed."""
    me = _me()
    return render_template(
        "console/tip_detail.html",
        tip=tip,
        error=error,
        sent=sent or {},
        phone=phone if phone is not None else tips.mask_phone(tip),
        phone_revealed=phone is not None,
        can_reveal=me.role in PHONE_ROLES and bool(tip.phone_enc),
        can_original=me.role in ORIGINAL_ROLES,
        can_redact=me.role in EDITOR_ROLES,
        actions=tips.allowed_actions(tip, me),
        units=_units(),
        duplicates=tips.duplicate_candidates(tip) if me.role in EDITOR_ROLES else [],
        notices=tips.notices_of(tip),
        due=tips.due_at(tip, tips.sla_hours()),
        now=utcnow(),
    ), status


@bp.get("/tips/<int:tip_id>")
@require_roles(*CONSOLE_ROLES)
def tip_detail(tip_id: int):  # type: ignore[no-untyped-def]
    return _detail(_tip_or_404(tip_id))


@bp.post("/tips/<int:tip_id>/action")
@require_roles(*CONSOLE_ROLES)
def tip_action(tip_id: int):  # type: ignore[no-untyped-def]
    tip = _tip_or_404(tip_id)
    form = request.form
    unit = form.get("unit_id", "")
    try:
        tips.transition(
            tip.id,
            form.get("action", ""),
            _me(),
            note=form.get("note"),
            unit_id=to_int(unit, lo=1),
            duplicate_of=form.get("duplicate_of"),
        )
    except tips.NotAllowed:
        abort(403)
    except ServiceError as exc:
        db.session.rollback()
        return _detail(db.session.get(Tip, tip_id), error=str(exc), sent=form, status=400)
    tip = db.session.get(Tip, tip_id)
    flash(f"线索 {tip.display_no} 已更新为「{tip.status.label}」", "success")
    if tip.status is TipStatus.DISPATCHED and (warning := tips.unreachable_warning(tip.unit_id)):
        flash(warning, "warning")
    return redirect(url_for("console.tip_detail", tip_id=tip_id))


@bp.post("/tips/<int:tip_id>/phone")
@require_roles(*PHONE_ROLES)
def tip_phone_reveal(tip_id: int):  # type: ignore[no-untyped-def]
    tip = _tip_or_404(tip_id)
    return _detail(tip, phone=tips.reveal_phone(tip))


@bp.get("/tips/photos/<int:photo_id>/<any(thumb, public, original):kind>")
@require_roles(*CONSOLE_ROLES)
def tip_photo(photo_id: int, kind: str):  # type: ignore[no-untyped-def]
    photo = tips.photo_for_console(photo_id) or abort(404)
    require_unit(photo.tip.unit_id if photo.tip else None)
    if kind == "original":
        if current_user.role not in ORIGINAL_ROLES:
            abort(403)
        if not photo.original_path:
            abort(404)
        tips.log_original_view(photo)
        path, mime = images.media_path(photo.original_path), photo.original_mime or "application/octet-stream"
    else:
        path, mime = images.media_path(photo.thumb_path if kind == "thumb" else photo.public_path), "image/jpeg"
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype=mime, conditional=True)
    response.headers["Cache-Control"] = "private, no-store" if kind == "original" else "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/tips/photos/<int:photo_id>/redact")
@require_roles(*EDITOR_ROLES)
def tip_photo_redact(photo_id: int):  # type: ignore[no-untyped-def]
    photo = tips.photo_for_console(photo_id) or abort(404)
    tip = _tip_or_404(photo.tip_id)  # type: ignore[arg-type]
    try:
        box = tuple(float(request.form[k]) / 100 for k in ("x", "y", "w", "h"))
        if not all(math.isfinite(v) for v in box):
            raise ValueError
        tips.redact_photo(photo, box)  # type: ignore[arg-type]
    except (KeyError, ValueError):
        return _detail(tip, error="请填写遮挡区域（百分比）", status=400)
    except ServiceError as exc:
        return _detail(tip, error=str(exc), status=400)
    flash("已遮挡照片的所选区域（原图不变）", "success")
    return redirect(url_for("console.tip_detail", tip_id=tip.id))


# -- settings: categories, SLA, blocked citizens ---------------------------------------------------------------------


def _settings_page(error: str | None = None, status: int = 200, block: Any = None):  # type: ignore[no-untyped-def]
    """`block`: a refused 禁止名单 form, shown again as typed."""
    return render_template(
        "console/tip_settings.html",
        categories=tips.categories(active_only=False),
        hours=tips.sla_hours(),
        statuses=[TipStatus(k) for k in tips.DEFAULT_SLA_HOURS],
        blocks=tips.blocks(),
        block=block or {},
        error=error,
    ), status


@bp.get("/tips/settings")
@require_roles(*EDITOR_ROLES)
def tip_settings():  # type: ignore[no-untyped-def]
    return _settings_page()


@bp.post("/tips/categories", defaults={"category_id": None})
@bp.post("/tips/categories/<int:category_id>")
@require_roles(*EDITOR_ROLES)
def tip_category_save(category_id: int | None):  # type: ignore[no-untyped-def]
    category = (db.session.get(TipCategory, category_id) or abort(404)) if category_id else None
    sort = request.form.get("sort", "0").strip()
    try:
        tips.save_category(
            name=request.form.get("name", ""),
            sort=to_int(sort, 0),
            active=request.form.get("active", "1") == "1",
            category=category,
        )
    except ServiceError as exc:
        db.session.rollback()
        return _settings_page(str(exc), 400)
    flash("类别已保存", "success")
    return redirect(url_for("console.tip_settings"))


@bp.post("/tips/sla")
@require_roles(*EDITOR_ROLES)
def tip_sla():  # type: ignore[no-untyped-def]
    try:
        tips.save_sla_hours(request.form)
    except ServiceError as exc:
        return _settings_page(str(exc), 400)
    flash("办理时限已保存", "success")
    return redirect(url_for("console.tip_settings"))


@bp.post("/tips/blocks")
@require_roles(*EDITOR_ROLES)
def tip_block():  # type: ignore[no-untyped-def]
    try:
        tips.block(request.form.get("openid", ""), request.form.get("reason", ""), by=_me())
    except ServiceError as exc:
        return _settings_page(str(exc), 400, block=request.form)
    flash("已加入禁止名单：该用户提交线索时会收到婉拒提示", "success")
    return redirect(url_for("console.tip_settings"))


@bp.post("/tips/blocks/<int:block_id>/delete")
@require_roles(*EDITOR_ROLES)
def tip_unblock(block_id: int):  # type: ignore[no-untyped-def]
    try:
        tips.unblock(block_id)
    except ServiceError:
        abort(404)
    flash("已解除禁止", "success")
    return redirect(url_for("console.tip_settings"))


# -- the map: points on an SVG scaled to their bounding box (no tiles: offline and honest) ---------------------------


def _nice_length(meters: float) -> int:
    """The largest 1/2/5 × 10^n not above `meters`, for the scale bar."""
    if meters <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(meters)))
    return max(step * power for step in (1, 2, 5) if step * power <= meters)


def _svg_map(points: list[Tip]) -> dict[str, Any] | None:
    if not points:
        return None
    lats, lngs = [t.latitude for t in points], [t.longitude for t in points]
    min_lat, max_lat, min_lng, max_lng = min(lats), max(lats), min(lngs), max(lngs)
    mid = math.radians((min_lat + max_lat) / 2)
    # Equirectangular around the middle latitude: at city scale the error is far below a dot's size.
    span_x = max((max_lng - min_lng) * math.cos(mid), 1e-5)
    span_y = max(max_lat - min_lat, 1e-5)
    scale = min((MAP_W - 2 * MAP_PAD) / span_x, (MAP_H - 2 * MAP_PAD) / span_y)
    dots = []
    for t in points:
        x = MAP_PAD + (t.longitude - min_lng) * math.cos(mid) * scale
        y = MAP_H - MAP_PAD - (t.latitude - min_lat) * scale
        dots.append({"tip": t, "x": round(x, 1), "y": round(y, 1), "colour": STATUS_COLOURS[t.status.value]})
    metres_per_px = (math.pi / 180) * tips.EARTH_RADIUS_M / scale
    bar_m = _nice_length(metres_per_px * 160)
    return {
        "w": MAP_W,
        "h": MAP_H,
        "dots": dots,
        "bar_m": bar_m,
        "bar_px": round(bar_m / metres_per_px, 1),
        "bar_label": f"{bar_m / 1000:g} 公里" if bar_m >= 1000 else f"{bar_m} 米",
        "bbox": f"{min_lat:.5f},{min_lng:.5f},{max_lat:.5f},{max_lng:.5f}",
        "colours": STATUS_COLOURS,
        "count": len(points),
    }
