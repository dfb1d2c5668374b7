"""Material library in the console: live feed, filters, groups of near-duplicates, tags and stars, a photo's page
with its position, processing (crop ratio, watermark, blur) and uploads to WeChat, and weekly numbers per unit.

Liaisons see only their unit's photos: another unit's photo is a 403.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy.orm import selectinload

from models import MaterialItem, MaterialRendition, Role, Staff, UploadState
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles, require_unit, visible_unit_ids
from server.extensions import db
from server.filters import LOCAL_TZ
from server.inputs import to_ids, to_int
from server.redirects import local_path
from server.services import ServiceError, images, lost_photos, materials
from server.services import staff as staff_service

# Who may caption, tag, star, crop and upload photos: not reviewers (they read), a liaison only in their own unit.
CURATORS = (Role.ADMIN, Role.EDITOR, Role.LIAISON)


def _item_or_404(item_id: int) -> MaterialItem:
    item = db.session.get(MaterialItem, item_id) or abort(404)
    require_unit(item.unit_id)
    return item


def _card(group: materials.Group) -> dict[str, Any]:
    item = group.lead
    return {
        "id": item.id,
        "count": len(group.members),
        "state": item.state.label,
        "thumb": url_for("console.material_file", item_id=item.id, which="thumb") if item.thumb_path else None,
        "url": url_for("console.material_detail", item_id=item.id),
        "uploader": item.uploader.name,
        "unit": item.unit.name if item.unit else "",
        "time": item.received_at.astimezone(LOCAL_TZ).strftime("%m-%d %H:%M"),
        "place": item.address or (f"{item.latitude:.5f}, {item.longitude:.5f}" if item.has_point else ""),
        "caption": item.caption or "",
        "starred": item.starred,
        "used": item.used_in_article,
    }


@bp.get("/materials")
@require_roles(*CONSOLE_ROLES)
def material_list():  # type: ignore[no-untyped-def]
    f = materials.parse_filter(request.args)
    before = request.args.get("before", "")
    before_id = to_int(before, lo=1)
    groups, next_before = materials.search_page(f, visible_unit_ids(), before_id=before_id)
    # Those with photos this person may see (a former officer's stay in the library; another unit's are not theirs).
    uploaders = sa.select(MaterialItem.uploader_id)
    if (visible := visible_unit_ids()) is not None:
        uploaders = uploaders.where(MaterialItem.unit_id.in_(visible))
    officers = db.session.scalars(
        sa.select(Staff).options(selectinload(Staff.unit)).where(Staff.id.in_(uploaders)).order_by(Staff.name)
    ).all()
    failures, failure_count = materials.recent_failures(f, visible_unit_ids()) if before_id is None else ([], 0)
    return render_template(
        "console/material_list.html",
        failures=failures,
        failure_notices=lost_photos.notice_states(failures),
        failure_count=failure_count,
        failure_days=materials.FAILURES_DAYS,
        cards=[_card(g) for g in groups],
        last_id=max((m.id for g in groups for m in g.members), default=0),
        live=before_id is None,  # new photos are prepended to the first page only
        next_before=next_before,
        f=f,
        args=f.as_dict(),
        units=staff_service.units_tree(),
        officers=officers,
    )


@bp.get("/materials/feed.json")
@require_roles(*CONSOLE_ROLES)
def material_feed():  # type: ignore[no-untyped-def]
    """New photos since `after` (polled by the list page): small, newest first. And what became of the photos the
    page shows as 处理中 (`pending`, their ids): the cards of those processed since, the ids of those refused."""
    after = request.args.get("after", "0")
    f = materials.parse_filter(request.args)
    groups = materials.search(f, visible_unit_ids(), after_id=to_int(after, 0, lo=0), limit=50)
    last = max((m.id for g in groups for m in g.members), default=0)
    ready, gone = materials.settled(to_ids(request.args.get("pending", "").split(",")), visible_unit_ids())
    return jsonify(
        {
            "items": [_card(g) for g in groups],
            "last_id": last,
            "ready": [_card(materials.Group(item, [item])) for item in ready],
            "gone": gone,
        }
    )


@bp.post("/materials/star")
@require_roles(*CURATORS)
def material_star():  # type: ignore[no-untyped-def]
    ids = to_ids(request.form.getlist("item_id"))
    count = materials.set_starred(ids, request.form.get("starred") == "1", visible_unit_ids())
    flash(f"已更新 {count} 张照片", "success")
    return redirect(local_path(request.form.get("next"), url_for("console.material_list"), "/admin/"))


@bp.get("/materials/stats")
@require_roles(*CONSOLE_ROLES)
def material_stats():  # type: ignore[no-untyped-def]
    return render_template("console/material_stats.html", rows=materials.weekly_counts(visible_unit_ids()))


@bp.get("/materials/<int:item_id>")
@require_roles(*CONSOLE_ROLES)
def material_detail(item_id: int):  # type: ignore[no-untyped-def]
    return _detail_page(_item_or_404(item_id))


def _detail_page(item: MaterialItem, form: Any = None, error: str | None = None, **context: Any) -> str:
    """The photo's page; after a refused save, with what was typed (`form`) and why."""
    group = []
    if item.group_id:
        stmt = sa.select(MaterialItem).where(MaterialItem.group_id == item.group_id).order_by(MaterialItem.id)
        group = list(db.session.scalars(stmt))
    return render_template(
        "console/material_detail.html",
        item=item,
        group=group,
        purposes=materials.PURPOSES,
        positions=materials.POSITIONS,
        uploads=materials.rendition_uploads(item),
        edit_token=materials.edit_token(item),
        form=form,
        error=error,
        **context,
    )


@bp.post("/materials/<int:item_id>/delete")
@require_roles(*CURATORS)
def material_delete(item_id: int):  # type: ignore[no-untyped-def]
    item = db.session.get(MaterialItem, item_id)
    if item is None:  # a double click's second copy, or another editor's delete
        flash("这张照片已被删除", "success")
        return redirect(url_for("console.material_list"))
    require_unit(item.unit_id)
    reason = request.form.get("reason", "")
    try:
        label = materials.delete_item(item.id, reason)
    except ServiceError as exc:
        if (item := db.session.get(MaterialItem, item_id)) is None:
            flash(str(exc), "success")
            return redirect(url_for("console.material_list"))
        return _detail_page(item, delete_error=str(exc), delete_reason=reason), 400
    flash(f"已删除照片 {label}", "success")
    return redirect(url_for("console.material_list"))


@bp.post("/materials/<int:item_id>/edit")
@require_roles(*CURATORS)
def material_edit(item_id: int):  # type: ignore[no-untyped-def]
    item = _item_or_404(item_id)
    try:
        materials.edit_item(
            item,
            caption=request.form.get("caption"),
            tags=request.form.get("tags", ""),
            address=request.form.get("address"),
            base=request.form.get("base") or None,
        )
    except ServiceError as exc:  # the page again with what was typed: a caption written at length is not lost
        return _detail_page(item, request.form, str(exc)), 409
    if "starred" in request.form:
        materials.set_starred([item.id], request.form["starred"] == "1", None)  # _item_or_404 checked the unit
    flash("已保存", "success")
    return redirect(url_for("console.material_detail", item_id=item.id))


def _recipe_from_form() -> materials.Recipe:
    form = request.form
    try:
        blur = json.loads(form.get("blur") or "[]")
        crop = json.loads(form["crop"]) if form.get("crop") else None
    except ValueError:
        raise ServiceError("区域格式有误") from None
    return materials.make_recipe(
        form.get("purpose", ""),
        crop=crop,
        blur=blur,
        watermark=form.get("watermark") or None,
        opacity=form.get("opacity", "0.6"),
    )


@bp.post("/materials/<int:item_id>/process")
@require_roles(*CURATORS)
def material_process(item_id: int):  # type: ignore[no-untyped-def]
    item = _item_or_404(item_id)
    try:
        if request.form.get("wechat") == "1":
            rendition, queued = materials.request_upload(item.id, _recipe_from_form())
            _flash_upload(rendition, queued, "已提交上传到微信")
        else:
            materials.request_processing(item, _recipe_from_form())
            flash("已提交处理", "success")
    except ServiceError as exc:
        flash(str(exc), "error")
    return redirect(url_for("console.material_detail", item_id=item.id))


@bp.post("/materials/<int:item_id>/renditions/<int:rendition_id>/retry")
@require_roles(*CURATORS)
def material_upload_retry(item_id: int, rendition_id: int):  # type: ignore[no-untyped-def]
    item = _item_or_404(item_id)
    rendition = db.session.get(MaterialRendition, rendition_id)
    if rendition is None or rendition.item_id != item.id:
        abort(404)
    _flash_upload(rendition, materials.retry_upload(rendition), "已重新提交上传到微信")
    return redirect(url_for("console.material_detail", item_id=item.id))


def _flash_upload(rendition: MaterialRendition, queued: bool, done: str) -> None:
    """What became of a request to upload: queued, or why nothing was (a double click finds it on its way)."""
    if queued:
        flash(f"{done}，上传结果见下方加工版本列表", "success")
        return
    db.session.refresh(rendition)
    [row] = [r for r in materials.rendition_uploads(rendition.item) if r.rendition.id == rendition.id]
    messages = {
        UploadState.UPLOADED: "这个版本已上传到微信",
        UploadState.QUEUED: "这个版本已在上传队列中，无需重复提交",
        UploadState.UPLOADING: "这个版本正在上传到微信，无需重复提交",
    }
    flash(messages.get(row.state, "这个版本没有需要重试的上传") if row.state else "这个版本没有需要重试的上传", "info")


@bp.get("/materials/<int:item_id>/file/<which>")
@require_roles(*CONSOLE_ROLES)
def material_file(item_id: int, which: str):  # type: ignore[no-untyped-def]
    item = _item_or_404(item_id)
    if which in ("thumb", "public"):
        path = item.thumb_path if which == "thumb" else item.public_path
    else:
        path = next((r.path for r in item.renditions if r.recipe_key == which), None)
    try:
        data = images.media_path(path).read_bytes() if path else None  # ≤ a few MB, closed at once
    except FileNotFoundError:  # its files removed under it (a delete racing the page, a restored backup)
        data = None
    if data is None:
        abort(404)
    res = Response(data, mimetype="image/jpeg")
    res.headers["Cache-Control"] = "private, max-age=3600"
    return res
